package sockopts

// read reads SO_KEEPALIVE, the only keepalive option OpenBSD has per
// socket; its timing is the whole machine's (sysctl net.inet.tcp.keepidle
// and keepintvl, and a count fixed at 8).
func read(g *getter) Values {
	return Values{KeepAlive: g.keepAlive()}
}
