// Package diskguard keeps a node from writing itself onto a full disk.
//
// Badger writes through memory-mapped files: when the filesystem has no
// page left for a write, the process dies of SIGBUS, and dies again at the
// next start while badger replays into its files. raft's log (a plain file
// write) fails cleanly with ENOSPC. So the node must stop before the disk
// is full, not after: a Guard reads the free space of the filesystems that
// hold the node's data every second and compares it with a reserve that
// covers what badger and raft may still write once writes stop being
// accepted (DefaultReserve).
//
// Below the reserve, Check refuses new writes with ErrDiskFull (the
// transport answers 507 disk_full); below half of it (the floor), a node
// also stops applying entries (WaitRoom), so that entries a leader with more
// room sends a follower wait in the raft log, which fails cleanly when it
// is full, instead of crashing the follower's badger. Both lift by
// themselves when space returns. WaitForRoom holds a start on a disk below
// the floor before badger opens.
package diskguard
