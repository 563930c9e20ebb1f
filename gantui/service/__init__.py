"""The run served to any number of consumers: the hub (fan-out, snapshot, commands, one preview
pacer), the Unix-socket server, the clients the dashboard uses, and the wire protocol."""
