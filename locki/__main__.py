from locki.cli.entry import main

main()
