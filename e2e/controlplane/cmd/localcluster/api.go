package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// apiClient talks to the apiserver as the admin user. Plain net/http keeps
// this launcher free of client-go; it only needs a handful of calls.
type apiClient struct {
	server string
	hc     *http.Client
}

func newAPIClient(dir string, st state) (*apiClient, error) {
	pki := filepath.Join(dir, "pki")
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		return nil, err
	}
	return &apiClient{
		server: "https://127.0.0.1:" + strconv.Itoa(st.APIServerPort),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		}},
	}, nil
}

func (a *apiClient) get(path string) error {
	_, err := a.do(http.MethodGet, path, nil)
	return err
}

// do sends a request and returns the body, or an error for non-2xx answers.
func (a *apiClient) do(method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequest(method, a.server+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, failedChecks(b))
	}
	return b, nil
}

// failedChecks shortens a /readyz-style body to its failing "[-]" lines.
func failedChecks(body []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(body, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("[-]")) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return bytes.TrimSpace(body)
	}
	return bytes.Join(out, []byte("; "))
}

func insecureClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // self-signed, loopback only
	}}
}

func httpGetContains(hc *http.Client, url, want string) error {
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(want)) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// kubeconfig renders a single-context kubeconfig; user holds the auth fields.
func kubeconfig(server string, ca []byte, userName string, user map[string]string) []byte {
	var u bytes.Buffer
	for _, k := range []string{"client-certificate-data", "client-key-data", "token"} {
		if v, ok := user[k]; ok {
			fmt.Fprintf(&u, "    %s: %s\n", k, v)
		}
	}
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
%scontexts:
- name: e2e
  context:
    cluster: e2e
    user: %s
current-context: e2e
`, server, base64.StdEncoding.EncodeToString(ca), userName, u.String(), userName)
}

// writeCertKubeconfig writes a self-contained kubeconfig for pki/NAME.{crt,key}.
func writeCertKubeconfig(path, server, pki, name string) error {
	var files [3][]byte
	for i, f := range []string{"ca.crt", name + ".crt", name + ".key"} {
		b, err := os.ReadFile(filepath.Join(pki, f))
		if err != nil {
			return err
		}
		files[i] = b
	}
	return os.WriteFile(path, kubeconfig(server, files[0], name, map[string]string{
		"client-certificate-data": base64.StdEncoding.EncodeToString(files[1]),
		"client-key-data":         base64.StdEncoding.EncodeToString(files[2]),
	}), 0o600)
}

// saKubeconfig writes a kubeconfig that authenticates as ServiceAccount ns/name
// with a bound token from the TokenRequest API, so a process using it gets
// exactly that account's RBAC.
func saKubeconfig(dir, ns, name, out string, expiry time.Duration) error {
	st, err := loadState(dir)
	if err != nil {
		return fmt.Errorf("no cluster state in %s: %w", dir, err)
	}
	api, err := newAPIClient(dir, st)
	if err != nil {
		return err
	}
	req := fmt.Appendf(nil, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":%d}}`,
		int64(expiry.Seconds()))
	body, err := api.do(http.MethodPost, fmt.Sprintf("/api/v1/namespaces/%s/serviceaccounts/%s/token", ns, name), req)
	if err != nil {
		return err
	}
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.Status.Token == "" {
		return fmt.Errorf("unexpected TokenRequest response: %v: %s", err, body)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		return err
	}
	user := "system:serviceaccount:" + ns + ":" + name
	if err := os.WriteFile(out, kubeconfig(api.server, ca, user, map[string]string{"token": tr.Status.Token}), 0o600); err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}
