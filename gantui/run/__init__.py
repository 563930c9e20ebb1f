"""The run, torch-free: the publisher every producer publishes through (gantui.Run), the run
directory, events, the hub, the socket server and its clients, the wire protocol, replays and the
list of runs."""
