"""The host daemon: the bridge's SSH server and the background reconcile loop, one process.

`python -m locki.hostd` is what `ensure_daemon` starts. It sits above the reconciler in
the layering (the bridge itself may not import the reconciler): it runs the bridge
daemon (`locki.bridge.daemon.run`) and hands it the loop (`locki.hostd.loop`) to run
beside the server until the daemon stops.
"""
