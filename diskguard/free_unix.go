//go:build linux || darwin || freebsd

package diskguard

import "syscall"

// Free returns the bytes available to an unprivileged writer on the
// filesystem that holds dir.
func Free(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
