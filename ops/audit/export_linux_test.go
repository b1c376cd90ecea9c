package audit

// SetTestHookDup makes f run as each descriptor is about to be duplicated,
// until the function it returns is called.
func SetTestHookDup(f func(pid, fd int)) (restore func()) {
	old := testHookDup
	testHookDup = f
	return func() { testHookDup = old }
}
