package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// start launches a component detached from us: its own session (so it is also
// its own process-group leader and survives our exit and terminal signals),
// stdin from /dev/null, stdout/stderr appended to logs/NAME.log. The pid,
// which doubles as the process-group id, is recorded in pids/NAME. The
// returned channel yields the exit status if it dies while we still run.
func start(dir string, c component) (<-chan error, error) {
	logPath := filepath.Join(dir, "logs", c.Name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "\n==== localcluster: starting %s at %s ====\n", c.Name, time.Now().Format(time.RFC3339))

	cmd := exec.Command(c.Args[0], c.Args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	// Reap the child if it exits while we are still running (a crash during
	// the readiness wait, or we stop it again), so no zombie lingers.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return exited, os.WriteFile(pidFile(dir, c.Name), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
}

func pidFile(dir, name string) string { return filepath.Join(dir, "pids", name) }

// stop terminates the recorded process group of a component: SIGTERM, then
// SIGKILL after grace, and waits until no member is left and the ports it
// owned can be bound again. A missing pid file or a dead/foreign pid is fine.
func stop(dir string, c component, grace time.Duration) error {
	pf := pidFile(dir, c.Name)
	b, err := os.ReadFile(pf)
	if errors.Is(err, os.ErrNotExist) {
		return waitPortsFree(c.Ports, grace)
	} else if err != nil {
		return err
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pgid <= 1 {
		return fmt.Errorf("bad pid file %s: %q", pf, b)
	}
	if members := groupMembers(pgid, dir); len(members) > 0 {
		signalGroup(pgid, members, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for len(groupMembers(pgid, dir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if m := groupMembers(pgid, dir); len(m) > 0 {
			// Expected when clients hold watches: servers drain them for up
			// to a minute, too long for a throwaway test cluster.
			logf("%s still running %s after SIGTERM, sending SIGKILL", c.Name, grace)
			signalGroup(pgid, m, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
			for len(groupMembers(pgid, dir)) > 0 {
				if time.Now().After(deadline) {
					return fmt.Errorf("%s (pgid %d) survived SIGKILL", c.Name, pgid)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if err := waitPortsFree(c.Ports, 10*time.Second); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	return os.Remove(pf)
}

func signalGroup(pgid int, members []int, sig syscall.Signal) {
	if err := syscall.Kill(-pgid, sig); err != nil {
		// The leader may be gone while others remain; signal them one by one.
		for _, p := range members {
			_ = syscall.Kill(p, sig)
		}
	}
}

// groupMembers lists the live (non-zombie) processes in process group pgid.
// To never signal a stranger after pid reuse, the group only counts as ours
// when its leader's command line mentions our state dir (all components get
// paths under it); a group whose leader is gone or a zombie is trusted.
func groupMembers(pgid int, dir string) []int {
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pgid)); err == nil &&
		len(cmdline) > 0 && !bytes.Contains(cmdline, []byte(dir)) {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil { // no procfs: fall back to kill(0), which also sees zombies
		if syscall.Kill(-pgid, 0) == nil {
			return []int{pgid}
		}
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after "comm)" are: state ppid pgrp ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitPortsFree waits until every port can be bound on 127.0.0.1 again.
func waitPortsFree(ports []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, p := range ports {
		for {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err == nil {
				l.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("port %d still in use: %v", p, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// freePorts reserves n distinct free loopback ports. They are released again
// before the components bind them; the race is acceptable for a test cluster.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n lines of a file, for failure reports.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
