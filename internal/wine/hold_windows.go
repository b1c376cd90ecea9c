package wine

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

var stdin struct {
	sync.Mutex
	r *bufio.Reader
}

// Hold lets the Linux side of the harness read a socket while the Windows
// program keeps it open. Under the harness (the environment variable
// [HoldEnv] is 1) it prints tag with the socket's local and remote address
// on standard output and waits for the Linux side to release it; elsewhere
// it returns at once. A nil remote stands for a listening socket. The tag
// names the case for the Linux side and must be a single line.
func Hold(t testing.TB, tag string, local, remote net.Addr) {
	t.Helper()
	if os.Getenv(HoldEnv) != "1" {
		return
	}
	if strings.ContainsAny(tag, "\r\n") {
		t.Fatalf("wine.Hold: tag %q is not a single line", tag)
	}
	r := "-"
	if remote != nil {
		r = remote.String()
	}
	stdin.Lock()
	defer stdin.Unlock()
	if stdin.r == nil {
		stdin.r = bufio.NewReader(os.Stdin)
	}
	if _, err := fmt.Fprintf(os.Stdout, "%s%s %s %s\n", holdPrefix, local, r, tag); err != nil {
		t.Fatalf("wine.Hold: %v", err)
	}
	if _, err := stdin.r.ReadString('\n'); err != nil {
		t.Fatalf("wine.Hold: waiting for the Linux side: %v", err)
	}
}
