// Command localcluster runs a real, single-host Kubernetes control plane
// (etcd, kube-apiserver, kube-controller-manager; no nodes) for e2e tests.
//
//	localcluster up            --dir DIR [--bin-dir BIN] [--timeout 120s]
//	localcluster down          --dir DIR
//	localcluster restart       --dir DIR apiserver|etcd|controller-manager|all
//	localcluster sa-kubeconfig --dir DIR --namespace NS --name SA --out FILE
//
// Components are detached (own session) so they outlive this process; their
// pids live in DIR/pids, logs in DIR/logs, and their exact command lines in
// DIR/state.json so restart reuses the same flags, ports and data.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

const (
	serviceCIDR = "10.96.0.0/16"
	saIssuer    = "https://kubernetes.default.svc.cluster.local"
)

// Component names double as binary, log and pid file names.
const (
	etcdName = "etcd"
	apiName  = "kube-apiserver"
	kcmName  = "kube-controller-manager"
)

type component struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`  // Args[0] is the absolute binary path
	Ports []int    `json:"ports"` // ports it listens on, checked free after stop
}

type state struct {
	APIServerPort int         `json:"apiserverPort"`
	EtcdPort      int         `json:"etcdPort"`
	KCMPort       int         `json:"kcmPort"`
	Components    []component `json:"components"` // in start order
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (required)")
	timeout := fs.Duration("timeout", 120*time.Second, "readiness timeout")
	grace := fs.Duration("grace", 5*time.Second, "SIGTERM grace period before SIGKILL")
	exe, _ := os.Executable()
	binDir := fs.String("bin-dir", filepath.Dir(exe), "directory with etcd, kube-apiserver, kube-controller-manager")
	ns := fs.String("namespace", "", "sa-kubeconfig: ServiceAccount namespace")
	name := fs.String("name", "", "sa-kubeconfig: ServiceAccount name")
	out := fs.String("out", "", "sa-kubeconfig: output kubeconfig path")
	expiry := fs.Duration("expiration", 7*24*time.Hour, "sa-kubeconfig: token lifetime")
	_ = fs.Parse(args)
	if *dir == "" {
		fail(errors.New("--dir is required"))
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}

	switch sub {
	case "up":
		err = up(d, *binDir, *timeout, *grace)
	case "down":
		err = down(d, *grace)
	case "restart":
		if fs.NArg() != 1 {
			usage()
		}
		err = restart(d, fs.Arg(0), *timeout, *grace)
	case "sa-kubeconfig":
		if *ns == "" || *name == "" || *out == "" {
			usage()
		}
		err = saKubeconfig(d, *ns, *name, *out, *expiry)
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up|down|restart [apiserver|etcd|controller-manager|all]|sa-kubeconfig --dir DIR [flags]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "localcluster:", err)
	os.Exit(1)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "localcluster: "+format+"\n", a...)
}

// up starts a fresh cluster in dir, replacing whatever ran there before.
func up(dir, binDir string, timeout, grace time.Duration) error {
	t0 := time.Now()
	if err := down(dir, grace); err != nil {
		return fmt.Errorf("stopping previous cluster: %w", err)
	}
	// Start from a clean slate but only remove what we own in dir.
	for _, p := range []string{"pki", "etcd-data", "logs", "pids", "run", "state.json", "kubeconfig", "controller-manager.kubeconfig"} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	for _, p := range []string{"logs", "pids", "run/apiserver", "run/controller-manager"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			return err
		}
	}
	_, svcNet, _ := net.ParseCIDR(serviceCIDR)
	firstIP := slices.Clone(svcNet.IP.To4())
	firstIP[3]++
	if err := genPKI(filepath.Join(dir, "pki"), firstIP); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	kcmQPS, err := controllerManagerQPS()
	if err != nil {
		return err
	}
	st := buildState(dir, binDir, ports, kcmQPS)
	server := "https://127.0.0.1:" + strconv.Itoa(st.APIServerPort)
	pki := filepath.Join(dir, "pki")
	if err := writeCertKubeconfig(filepath.Join(dir, "kubeconfig"), server, pki, "admin"); err != nil {
		return err
	}
	if err := writeCertKubeconfig(filepath.Join(dir, "controller-manager.kubeconfig"), server, pki, "controller-manager"); err != nil {
		return err
	}
	if err := saveState(dir, st); err != nil {
		return err
	}

	ctx, cancel := startCtx(timeout)
	defer cancel()
	for _, c := range st.Components {
		if err := startReady(ctx, dir, st, c); err != nil {
			_ = down(dir, grace) // leave nothing behind on failure
			return err
		}
	}
	// The controller-manager is "healthy" quickly; prove its controllers act
	// by waiting for the serviceaccount controller to create default/default.
	api, err := newAPIClient(dir, st)
	if err != nil {
		return err
	}
	if err := poll(ctx, func() error {
		return api.get("/api/v1/namespaces/default/serviceaccounts/default")
	}); err != nil {
		err = fmt.Errorf("controller-manager did not create ServiceAccount default/default: %w\n--- %s.log (tail) ---\n%s",
			err, kcmName, tail(filepath.Join(dir, "logs", kcmName+".log"), 40))
		_ = down(dir, grace)
		return err
	}
	logf("cluster up in %s (apiserver %s)", time.Since(t0).Round(time.Millisecond), server)
	fmt.Println(filepath.Join(dir, "kubeconfig"))
	return nil
}

// buildState fixes every component's command line once, so restarts reuse it.
func buildState(dir, binDir string, ports []int, kcmQPS int) state {
	p := func(rel string) string { return filepath.Join(dir, rel) }
	pki := func(f string) string { return filepath.Join(dir, "pki", f) }
	st := state{EtcdPort: ports[0], APIServerPort: ports[2], KCMPort: ports[3]}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	st.Components = []component{
		{Name: etcdName, Ports: ports[:2], Args: []string{
			filepath.Join(binDir, "etcd"),
			"--name=e2e",
			"--data-dir=" + p("etcd-data"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=e2e=" + peerURL,
			// Page cache survives process kills (restart tests); only a host
			// crash could lose data, which does not matter for a test cluster.
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		}},
		{Name: apiName, Ports: ports[2:3], Args: []string{
			filepath.Join(binDir, "kube-apiserver"),
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[2]),
			"--cert-dir=" + p("run/apiserver"),
			"--tls-cert-file=" + pki("apiserver.crt"),
			"--tls-private-key-file=" + pki("apiserver.key"),
			"--client-ca-file=" + pki("ca.crt"),
			"--authorization-mode=RBAC",
			"--service-cluster-ip-range=" + serviceCIDR,
			"--service-account-issuer=" + saIssuer,
			"--service-account-key-file=" + pki("sa.pub"),
			"--service-account-signing-key-file=" + pki("sa.key"),
			// No nodes or pods: a loopback endpoint for the kubernetes
			// Service would be rejected, so don't reconcile it.
			"--endpoint-reconciler-type=none",
			// E2E_APISERVER_PROFILING=1 serves /debug/pprof (admin only), for
			// the benchmarks' CPU profiles of the apiserver (docs/benchmarks.md).
			"--profiling=" + strconv.FormatBool(os.Getenv("E2E_APISERVER_PROFILING") == "1"),
		}},
		{Name: kcmName, Ports: ports[3:4], Args: []string{
			filepath.Join(binDir, "kube-controller-manager"),
			"--kubeconfig=" + p("controller-manager.kubeconfig"),
			"--authentication-kubeconfig=" + p("controller-manager.kubeconfig"),
			"--authorization-kubeconfig=" + p("controller-manager.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[3]),
			"--cert-dir=" + p("run/controller-manager"),
			"--leader-elect=false",
			// Per-controller ServiceAccounts, as kubeadm does: the bootstrap RBAC
			// of system:kube-controller-manager alone does not cover every controller.
			"--use-service-account-credentials=true",
			"--controllers=*", // includes garbagecollector, namespace, serviceaccount
			"--service-account-private-key-file=" + pki("sa.key"),
			"--root-ca-file=" + pki("ca.crt"),
			"--profiling=false",
		}},
	}
	// E2E_CONTROLLER_MANAGER_QPS raises each controller's client rate (default 20
	// per second): the scale benchmark sets it, so that the endpoints controller's
	// clean-up after 10,000 deleted Services takes a minute, not eight.
	if kcmQPS > 0 {
		kcm := &st.Components[len(st.Components)-1]
		kcm.Args = append(kcm.Args,
			"--kube-api-qps="+strconv.Itoa(kcmQPS),
			"--kube-api-burst="+strconv.Itoa(2*kcmQPS))
	}
	return st
}

// controllerManagerQPS is E2E_CONTROLLER_MANAGER_QPS, or 0 when unset (the
// controller-manager keeps its own default).
func controllerManagerQPS() (int, error) {
	value := os.Getenv("E2E_CONTROLLER_MANAGER_QPS")
	if value == "" {
		return 0, nil
	}
	qps, err := strconv.Atoi(value)
	if err != nil || qps <= 0 || qps > 10000 {
		return 0, fmt.Errorf("E2E_CONTROLLER_MANAGER_QPS=%q: want a whole number from 1 to 10000", value)
	}
	return qps, nil
}

// startReady starts one component and waits until it reports healthy,
// returning an error with the tail of its log otherwise.
func startReady(ctx context.Context, dir string, st state, c component) error {
	t0 := time.Now()
	exited, err := start(dir, c)
	if err != nil {
		return err
	}
	check, err := readiness(dir, st, c.Name)
	if err != nil {
		return err
	}
	if err := poll(ctx, func() error {
		select {
		case werr := <-exited: // don't wait for the timeout if it crashed
			return permanent{fmt.Errorf("exited during startup: %v", werr)}
		default:
			return check()
		}
	}); err != nil {
		return fmt.Errorf("%s not ready: %w\n--- %s.log (tail) ---\n%s",
			c.Name, err, c.Name, tail(filepath.Join(dir, "logs", c.Name+".log"), 40))
	}
	logf("%s ready in %s", c.Name, time.Since(t0).Round(time.Millisecond))
	return nil
}

// readiness returns the health probe for a component.
func readiness(dir string, st state, name string) (func() error, error) {
	switch name {
	case etcdName:
		url := fmt.Sprintf("http://127.0.0.1:%d/health", st.EtcdPort)
		return func() error { return httpGetContains(nil, url, `"true"`) }, nil
	case apiName:
		api, err := newAPIClient(dir, st)
		if err != nil {
			return nil, err
		}
		return func() error { return api.get("/readyz") }, nil
	case kcmName:
		// /healthz is always allowed; the serving cert is self-signed.
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", st.KCMPort)
		return func() error { return httpGetContains(insecureClient(), url, "ok") }, nil
	}
	return nil, fmt.Errorf("unknown component %q", name)
}

// startCtx bounds a startup by timeout and by SIGINT/SIGTERM: an interrupted
// up/restart then stops what it started (via the caller) instead of dying
// between starting a process and recording it.
func startCtx(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

// permanent marks an error that poll must not retry.
type permanent struct{ error }

// poll retries f every 250ms until it succeeds, fails permanently or ctx ends.
func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || errors.As(err, new(permanent)) {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("interrupted: last error: %w", err)
			}
			return fmt.Errorf("timed out: last error: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// down stops every recorded component, last started first. It is idempotent.
func down(dir string, grace time.Duration) error {
	st, err := loadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		st = state{Components: []component{{Name: etcdName}, {Name: apiName}, {Name: kcmName}}}
	} else if err != nil {
		return err
	}
	var errs []error
	for _, c := range slices.Backward(st.Components) {
		if err := stop(dir, c, grace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restart stops and starts components with their recorded flags and data.
func restart(dir, which string, timeout, grace time.Duration) error {
	st, err := loadState(dir)
	if err != nil {
		return fmt.Errorf("no cluster state in %s: %w", dir, err)
	}
	names := map[string][]string{
		"etcd":               {etcdName},
		"apiserver":          {apiName},
		"controller-manager": {kcmName},
		"all":                {etcdName, apiName, kcmName},
	}[which]
	if names == nil {
		return fmt.Errorf("restart: unknown component %q (want apiserver|etcd|controller-manager|all)", which)
	}
	var sel []component
	for _, c := range st.Components {
		if slices.Contains(names, c.Name) {
			sel = append(sel, c)
		}
	}
	for _, c := range slices.Backward(sel) {
		if err := stop(dir, c, grace); err != nil {
			return err
		}
	}
	ctx, cancel := startCtx(timeout)
	defer cancel()
	for _, c := range sel {
		if err := startReady(ctx, dir, st, c); err != nil {
			return err
		}
	}
	// Whatever was restarted, the API must be fully ready again afterwards.
	check, err := readiness(dir, st, apiName)
	if err != nil {
		return err
	}
	return poll(ctx, check)
}

func saveState(dir string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "state.json"), b, 0o644)
}

func loadState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state.json: %w", err)
	}
	return st, nil
}
