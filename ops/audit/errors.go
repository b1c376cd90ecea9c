package audit

import "fmt"

// PermissionError reports that the caller may not inspect or change a
// process's sockets: listing its descriptors (/proc/PID/fd) or duplicating
// one (pidfd_getfd) was refused. Its message says in words what is
// missing. It wraps the errno, so errors.Is(err, os.ErrPermission) holds.
type PermissionError struct {
	// PID is the process.
	PID int

	// Command is the name of the process (/proc/PID/comm), which anyone
	// may read; empty if it had ended.
	Command string

	// Op is what was refused: "open /proc/PID/fd", "readlink", "pidfd_getfd"
	// or "open /proc/PID/ns/net".
	Op string

	// Err is the error the kernel returned, EACCES or EPERM.
	Err error

	// Why says what access was needed and how to get it: the user that
	// owns the process, CAP_SYS_PTRACE, and Yama's ptrace_scope where it is
	// set.
	Why string
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("audit: no permission to inspect process %d (%s: %v): %s", e.PID, e.Op, e.Err, e.Why)
}

func (e *PermissionError) Unwrap() error { return e.Err }
