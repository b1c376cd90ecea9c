//go:build linux && cgo

// Package libpq calls the system's libpq, loaded at run time with dlopen,
// so that tests can compare keepalive.ParsePostgres with the library whose
// connection strings it reads: how libpq parses a string
// (PQconninfoParse), and what it sets on the socket it connects with
// (PQconnectStart, PQsocket).
package libpq

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// libpq-fe.h's PQconninfoOption.
typedef struct {
	char *keyword;
	char *envvar;
	char *compiled;
	char *val;
	char *label;
	char *dispchar;
	int dispsize;
} option;

static void *lib;
static option *(*conninfo_parse)(const char *, char **);
static void (*conninfo_free)(option *);
static void (*freemem)(void *);
static void *(*connect_start)(const char *);
static int (*status)(const void *);
static int (*socket_of)(const void *);
static char *(*error_message)(const void *);
static void (*finish)(void *);

static const char *load(void) {
	if (lib) return NULL;
	void *l = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
	if (!l) return dlerror();
	conninfo_parse = dlsym(l, "PQconninfoParse");
	conninfo_free = dlsym(l, "PQconninfoFree");
	freemem = dlsym(l, "PQfreemem");
	connect_start = dlsym(l, "PQconnectStart");
	status = dlsym(l, "PQstatus");
	socket_of = dlsym(l, "PQsocket");
	error_message = dlsym(l, "PQerrorMessage");
	finish = dlsym(l, "PQfinish");
	if (!conninfo_parse || !conninfo_free || !freemem || !connect_start || !status || !socket_of || !error_message || !finish)
		return "libpq.so.5 lacks a function";
	lib = l;
	return NULL;
}

static option *call_conninfo_parse(const char *s, char **err) { return conninfo_parse(s, err); }
static void call_conninfo_free(option *o) { conninfo_free(o); }
static void call_freemem(void *p) { freemem(p); }
static void *call_connect_start(const char *s) { return connect_start(s); }
static int call_status(void *c) { return status(c); }
static int call_socket(void *c) { return socket_of(c); }
static char *call_error_message(void *c) { return error_message(c); }
static void call_finish(void *c) { finish(c); }
*/
import "C"

import (
	"errors"
	"os"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/sockopts"
)

var (
	loadOnce sync.Once
	loadErr  error
)

// Load loads libpq.so.5. It fails when the library (Debian's libpq5) is
// not installed.
func Load() error {
	loadOnce.Do(func() {
		if msg := C.load(); msg != nil {
			loadErr = errors.New("libpq: " + C.GoString(msg))
		}
	})
	return loadErr
}

// ConninfoParse returns the options libpq's PQconninfoParse reads from
// conninfo, by keyword, or libpq's error message.
func ConninfoParse(conninfo string) (map[string]string, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	cs := C.CString(conninfo)
	defer C.free(unsafe.Pointer(cs))
	var cerr *C.char
	opts := C.call_conninfo_parse(cs, &cerr)
	if opts == nil {
		msg := "out of memory"
		if cerr != nil {
			msg = strings.TrimSpace(C.GoString(cerr))
			C.call_freemem(unsafe.Pointer(cerr))
		}
		return nil, errors.New(msg)
	}
	defer C.call_conninfo_free(opts)
	m := map[string]string{}
	for o := opts; o.keyword != nil; o = (*C.option)(unsafe.Add(unsafe.Pointer(o), unsafe.Sizeof(*o))) {
		if o.val != nil {
			m[C.GoString(o.keyword)] = C.GoString(o.val)
		}
	}
	return m, nil
}

// connectionBad is libpq-fe.h's CONNECTION_BAD.
const connectionBad = 1

// Socket starts a connection with libpq's PQconnectStart, which makes the
// socket, sets its options and starts the TCP handshake, and returns what
// getsockopt reports for that socket; or libpq's error when libpq refused
// the options or could not start.
func Socket(conninfo string) (sockopts.Values, error) {
	if err := Load(); err != nil {
		return sockopts.Values{}, err
	}
	cs := C.CString(conninfo)
	defer C.free(unsafe.Pointer(cs))
	conn := C.call_connect_start(cs)
	if conn == nil {
		return sockopts.Values{}, errors.New("libpq: out of memory")
	}
	defer C.call_finish(conn)
	if C.call_status(conn) == connectionBad {
		return sockopts.Values{}, errors.New(strings.TrimSpace(C.GoString(C.call_error_message(conn))))
	}
	fd, err := unix.Dup(int(C.call_socket(conn)))
	if err != nil {
		return sockopts.Values{}, os.NewSyscallError("dup", err)
	}
	f := os.NewFile(uintptr(fd), "libpq")
	defer f.Close()
	return sockopts.Read(f)
}
