package main

import "errors"

// Plan 9 reports network errors as strings, with no errno to match: a
// connection that ends with an error is reported as failed.
var (
	errTimedOut = errors.New("connection timed out")
	errReset    = errors.New("connection reset")
)
