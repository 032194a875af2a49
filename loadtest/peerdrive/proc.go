package main

import (
	"os"
	"strconv"
	"strings"
)

// The server's and the driver's memory and CPU, from /proc, read the same
// way the peer's driver reads them. A pid of "self" is this process.

// vmRSSKiB is VmRSS from /proc/PID/status, or -1.
func vmRSSKiB(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return -1
}

// cpuTicks is utime+stime of a process in clock ticks (USER_HZ), or -1.
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return -1
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return -1
	}
	// fields after ")": state(0) ...; utime is field 14 overall, index 11 here.
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// userHZ is Linux's USER_HZ, the unit of /proc's CPU times.
const userHZ = 100

// machineBusyTicks is the busy time of all CPUs (everything in /proc/stat's
// "cpu" line except idle and iowait), in clock ticks. Busy time not taken by
// the server or the driver shows other load sharing the machine.
func machineBusyTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 2 {
		return -1
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return busy
}
