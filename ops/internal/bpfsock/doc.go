// Package bpfsock is the BPF layer under keepalive's operations code: the
// programs that set keepalive options on TCP sockets from inside the
// kernel, the maps they share, where they are pinned, and how a TCP
// iterator is run in each network namespace. It is written with
// github.com/cilium/ebpf's asm package, so building it needs no C
// toolchain, and it is Linux's only.
//
// # What it offers
//
//   - [LoadKernel] reads the offsets of the kernel structures the programs
//     read (struct sock, tcp_sock, cgroup, kernfs_node) from the kernel's
//     BTF, and [Kernel.Probe] says what the kernel lacks, by name.
//   - [Kernel.SockOps], [Kernel.Setsockopt] and [Kernel.ApplyIter] build the
//     three programs of a [Policy]; the emitters they are made of (the
//     cgroup walk, the flow filter, the storage record) are methods of the
//     unexported builder, for more programs of the same kind.
//   - [Record] is the per-socket record the programs keep in the shared
//     socket-local storage map ([Shared.Sockets]): which policy last set the
//     socket's options, which options it set, which the process set itself.
//     Any program given that map can read it with bpf_sk_storage_get; from
//     user space it is read with the socket's descriptor as the key
//     ([Shared.Lookup]).
//   - [Dir] is the bpffs directory of the project, with one directory per
//     policy ([PolicyPins]), the shared maps, and a lock ([Dir.Lock]) that
//     serialises the programs that change them.
//   - [Kernel.DumpIter] builds a TCP iterator that changes nothing and
//     reports every TCP socket with the values in force (bpf_getsockopt),
//     its owner, inode and cgroup, and its Record; [RunDump] decodes it
//     into [Socket]s. Nothing is ptraced: it reads any process's sockets,
//     in any namespace the caller may enter.
//   - [Namespaces] finds the network namespaces of the processes of a
//     cgroup tree, and [RunIter] runs a TCP iterator in each: a TCP
//     iterator walks the sockets of the namespace it is opened in.
//   - [ListObjects] lists the project's programs, maps and links loaded in
//     the kernel, by name, so that a test can prove that none is left.
package bpfsock
