from locki.cli.main import main

main()
