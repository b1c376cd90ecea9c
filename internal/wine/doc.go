// Package wine runs the Windows build of a Go package's tests under Wine on
// Linux, and reads from the Linux side what the kernel holds for the
// sockets of the Windows program.
//
// Under Wine a Windows socket is a Linux socket. wineserver creates it and
// holds its descriptor; the Windows process holds a duplicate too from the
// first call that needs one (setsockopt, WSAIoctl, send, recv), except for
// a socket accepted with AcceptEx, as Go accepts on Windows, whose
// duplicates the process closes after each call. So the options a Windows
// program sets through Winsock can be read back with getsockopt on a
// duplicate taken with pidfd_getfd from the program or, failing that, from
// the wineserver of the prefix, and compared with what the program asked
// for.
//
// The two sides talk over the Windows program's standard input and output.
// A Windows test calls [Hold] with a connection: under the harness it
// prints the connection's addresses and waits; on real Windows it returns
// at once. The Linux test reads the hold with [Process.Next], reads the
// socket with [Process.Socket], and lets the program go on with
// [Process.Release] (or does all three with [Process.EachHold]).
//
// On Linux, [Setup] finds Wine and the mingw-w64 cross compiler, builds a
// bcryptprimitives.dll (Go 1.22 and later need its ProcessPrng, which Wine
// 8.0 lacks) and keeps a Wine prefix in the user's cache folder for the
// runs that follow. It needs the Debian packages wine, wine64 and
// gcc-mingw-w64-x86-64, and skips the test without them (fails it when the
// environment variable CI is set).
package wine

// HoldEnv is the environment variable that the harness sets to 1 for the
// Windows programs it starts; [Hold] waits only when it is set.
const HoldEnv = "KEEPALIVE_WINE_HOLD"

// holdPrefix starts the line that [Hold] prints.
const holdPrefix = "wine-hold "
