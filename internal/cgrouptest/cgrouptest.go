// Package cgrouptest gives tests cgroups of their own to put BPF programs
// on, and serialises such tests across the test binaries of every module,
// so that a test can count the project's BPF objects before and after and
// find exactly its own.
package cgrouptest
