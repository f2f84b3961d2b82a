//! Forward mode and CONNECT (SPEC-proxy sections 2, 3, 5) with real clients: curl
//! (`-x`), git (`http.proxy`, `http.sslCAInfo`), kubectl (`proxy-url`) against the e2e
//! kube-apiserver, and a JVM (`HttpURLConnection`, credentials only after a `407`).
//! The proxy's CA comes from ConfigMap `connectors-proxy-ca` as a workload reads it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use connectors_e2e::fixtures::{
    BASIC_AUTH_TYPE, ClassGuard, PROXY_CLASS_EXTRA, basic_secret, class_head,
};
use connectors_e2e::git::{self, ScratchDir};
use connectors_e2e::process::DemoTool;
use connectors_e2e::proxy::{
    CurlResponse, ProxyOptions, ProxyProcess, service_account_with_access,
};
use connectors_e2e::{TestNamespace, apply_yaml, eventually, kubectl_ok};
use serde_json::Value;

const BASIC: &str = "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk";

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ca_secret(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  ca.crt: |\n{indented}"
    )
}

fn connector(
    name: &str,
    class: &str,
    address: &str,
    auth: &str,
    secret: &str,
    ca: Option<&str>,
) -> String {
    let ca = ca
        .map(|c| format!("  caCertSecretRef: {{name: {c}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {{name: {name}}}\nspec:\n  connectorClassName: {class}\n  address: {address}\n  auth: {{name: {auth}, secretRef: {{name: {secret}}}}}\n{ca}"
    )
}

struct Env {
    ns: TestNamespace,
    operator_ns: TestNamespace,
    class: String,
    _class: ClassGuard,
    web: DemoTool,
    secure: DemoTool,
    proxy: ProxyProcess,
    token: String,
    proxy_ca: PathBuf,
    scratch: ScratchDir,
}

fn env(prefix: &str) -> Env {
    let scratch = ScratchDir::new(prefix);
    let (ca, cert, key) = connectors_e2e::pki::ca_and_leaf(scratch.path());
    let class = format!("{prefix}-{}", std::process::id());
    let bearer = "    - name: bearer\n      secretType: connectors.cpaas.io/bearer-token\n";
    let guard = ClassGuard::apply(
        &class,
        &format!(
            "{}{BASIC_AUTH_TYPE}{bearer}{PROXY_CLASS_EXTRA}",
            class_head(&class)
        ),
    );
    let ns = TestNamespace::new(prefix);
    let web = DemoTool::start();
    let secure = DemoTool::start_tls(&cert, &key);
    apply_yaml(&ns, &basic_secret("basic", "demo-password"));
    apply_yaml(
        &ns,
        &ca_secret("test-ca", &std::fs::read_to_string(&ca).unwrap()),
    );
    apply_yaml(
        &ns,
        &connector("web", &class, &web.url(), "basicAuth", "basic", None),
    );
    apply_yaml(
        &ns,
        &connector(
            "secure",
            &class,
            &secure.url(),
            "basicAuth",
            "basic",
            Some("test-ca"),
        ),
    );
    let token = service_account_with_access(&ns, "builder");
    // Its own operator namespace: its flags, and its CA published there.
    let operator_ns = TestNamespace::new(&format!("{prefix}-op"));
    let proxy = ProxyProcess::start(ProxyOptions {
        namespace: operator_ns.name().to_string(),
        ..Default::default()
    });
    let pem = kubectl_ok([
        "get",
        "configmap",
        "connectors-proxy-ca",
        "-n",
        operator_ns.name(),
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    let proxy_ca = scratch.join("proxy-ca.pem");
    std::fs::write(&proxy_ca, pem).unwrap();
    Env {
        ns,
        operator_ns,
        class,
        _class: guard,
        web,
        secure,
        proxy,
        token,
        proxy_ca,
        scratch,
    }
}

impl Env {
    fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.port)
    }

    fn curl(&self, url: &str, user: Option<&str>, extra: &[&str]) -> CurlResponse {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-i",
            "--max-time",
            "30",
            "-x",
            &self.proxy_url(),
            "--cacert",
        ])
        .arg(&self.proxy_ca);
        if let Some(user) = user {
            cmd.args(["--proxy-user", &format!("{user}:{}", self.token)]);
        }
        cmd.args(extra).arg(url);
        CurlResponse::from(cmd.output().expect("curl"))
    }

    fn ready(&self) {
        eventually(Duration::from_secs(20), || {
            let r = self.curl(
                &format!("{}/echo/ready", self.web.url()),
                Some(&format!("{}/web", self.ns.name())),
                &[],
            );
            if r.status == 200 {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.body))
            }
        });
    }
}

fn authorization(r: &CurlResponse) -> Option<String> {
    let echo: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "authorization")
        .map(|h| h[1].as_str().unwrap().to_string())
}

#[test]
fn curl_through_the_forward_proxy_and_connect_gets_the_connectors_credentials() {
    let e = env("fwd-curl");
    let ns = e.ns.name();
    let http = format!("{}/echo/x", e.web.url());
    let https = format!("{}/echo/y", e.secure.url());
    // Without credentials: 407 with the challenge, also for CONNECT.
    let r = e.curl(&http, None, &[]);
    assert_eq!(r.status, 407, "{r:?}");
    assert_eq!(
        r.header("proxy-authenticate").as_deref(),
        Some(r#"Basic realm="connectors-proxy""#)
    );
    let r = e.curl(&https, None, &["-v"]);
    assert!(
        String::from_utf8_lossy(&r.output.stderr).contains("407"),
        "{r:?}"
    );
    e.ready();
    // Plain http in absolute form, `ns/name` and a bare name (the token's namespace).
    for user in [
        format!("{ns}/web"),
        "web".to_string(),
        format!("{ns}%2Fweb"),
    ] {
        let r = e.curl(&http, Some(&user), &[]);
        assert_eq!(authorization(&r).as_deref(), Some(BASIC), "{user}: {r:?}");
        assert!(!r.body.contains(&e.token));
    }
    // CONNECT: the proxy's leaf (trusted through the published CA), the tool's
    // credentials inside, the tool's own certificate checked with the Connector's CA.
    let r = e.curl(&https, Some(&format!("{ns}/secure")), &[]);
    assert_eq!(authorization(&r).as_deref(), Some(BASIC), "{r:?}");
    // Another host inside the tunnel: 421.
    let r = e.curl(
        &https,
        Some(&format!("{ns}/secure")),
        &["-H", "Host: other.example"],
    );
    assert_eq!(r.status, 421, "{r:?}");
    // A target of no listed Connector: forwarded, without credentials.
    let other = DemoTool::start();
    let r = e.curl(
        &format!("{}/echo/z", other.url()),
        Some(&format!("{ns}/web")),
        &["-H", "Authorization: Bearer client-own"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        authorization(&r),
        None,
        "no credentials toward another target: {r:?}"
    );
}

#[test]
fn only_authorised_connectors_lend_credentials_and_several_need_the_flag() {
    let e = env("fwd-multi");
    let ns = e.ns.name();
    // A Connector in a namespace the account may not read.
    let foreign = TestNamespace::new("fwd-multi-foreign");
    apply_yaml(&foreign, &basic_secret("basic", "demo-password"));
    let other = DemoTool::start();
    apply_yaml(
        &foreign,
        &connector("denied", &e.class, &other.url(), "basicAuth", "basic", None),
    );
    e.ready();
    let both = format!("{ns}/web,{}/denied", foreign.name());
    let r = e.curl(&format!("{}/echo/a", e.web.url()), Some(&both), &[]);
    assert_eq!(r.status, 400, "several Connectors without the flag: {r:?}");
    apply_yaml(
        &e.operator_ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: connectors-config}\ndata:\n  enable-multi-connector: \"true\"\n",
    );
    let r = eventually(Duration::from_secs(20), || {
        let r = e.curl(&format!("{}/echo/a", e.web.url()), Some(&both), &[]);
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{}", r.status))
        }
    });
    assert_eq!(authorization(&r).as_deref(), Some(BASIC));
    let r = e.curl(&format!("{}/echo/b", other.url()), Some(&both), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        authorization(&r),
        None,
        "the unauthorised Connector lent its credentials"
    );
    // Only unauthorised Connectors: 403.
    let r = e.curl(
        &format!("{}/echo/b", other.url()),
        Some(&format!("{}/denied", foreign.name())),
        &[],
    );
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn git_clones_https_through_connect() {
    let e = env("fwd-git");
    e.ready();
    let proxy = format!(
        "http.proxy=http://{}%2Fsecure:{}@127.0.0.1:{}",
        e.ns.name(),
        e.token,
        e.proxy.port
    );
    let ca = format!("http.sslCAInfo={}", e.proxy_ca.display());
    let out = git::clone(
        &e.secure.repo_url(),
        &e.scratch.join("clone"),
        &[&proxy, &ca],
    );
    git::assert_success(&out, "git clone https through CONNECT");
    assert!(
        e.scratch.join("clone").join("README.md").exists()
            || std::fs::read_dir(e.scratch.join("clone")).unwrap().count() > 1
    );
}

#[test]
fn kubectl_reaches_the_apiserver_through_the_proxy() {
    let e = env("fwd-kubectl");
    // The "target cluster" is the e2e apiserver: its address by IP, its CA, a token of
    // an account there that may list namespaces.
    let cfg: Value = serde_json::from_str(&kubectl_ok([
        "config",
        "view",
        "--raw",
        "--minify",
        "--flatten",
        "-o",
        "json",
    ]))
    .unwrap();
    let server = cfg["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let ca_b64 = cfg["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    use base64::Engine as _;
    let apiserver_ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca_b64)
            .unwrap(),
    )
    .unwrap();
    let ns = e.ns.name();
    kubectl_ok(["create", "serviceaccount", "remote-reader", "-n", ns]);
    kubectl_ok([
        "create",
        "clusterrolebinding",
        &format!("{ns}-remote-reader"),
        "--clusterrole=view",
        &format!("--serviceaccount={ns}:remote-reader"),
    ]);
    let remote = kubectl_ok([
        "create",
        "token",
        "remote-reader",
        "-n",
        ns,
        "--duration=1h",
    ]);
    apply_yaml(
        &e.ns,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: remote}}\ntype: connectors.cpaas.io/bearer-token\nstringData: {{token: {}}}\n",
            remote.trim()
        ),
    );
    apply_yaml(&e.ns, &ca_secret("apiserver-ca", &apiserver_ca));
    apply_yaml(
        &e.ns,
        &connector(
            "k8s",
            &e.class,
            &server,
            "bearer",
            "remote",
            Some("apiserver-ca"),
        ),
    );
    let proxy_ca =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&e.proxy_ca).unwrap());
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "remote", "cluster": {
            "server": server, "certificate-authority-data": proxy_ca,
            "proxy-url": format!("http://{ns}%2Fk8s:{}@127.0.0.1:{}", e.token, e.proxy.port)}}],
        // No real credentials: kubectl would prompt without any; this one is stripped.
        "users": [{"name": "nobody", "user": {"token": "not-a-credential"}}],
        "contexts": [{"name": "remote", "context": {"cluster": "remote", "user": "nobody"}}],
        "current-context": "remote",
    });
    let path = e.scratch.join("kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).unwrap();
    let kubectl = |args: &[&str]| {
        Command::new(connectors_e2e::kubectl_bin())
            .arg("--kubeconfig")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let out = eventually(Duration::from_secs(20), || {
        let out = kubectl(&["get", "namespaces", "-o", "name"]);
        if out.status.success() {
            Ok(out)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("namespace/{ns}")));
    // A watch keeps its stream open through the tunnel.
    let mut watch = Command::new(connectors_e2e::kubectl_bin())
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "namespaces", "-w"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(30));
    let still_running = watch.try_wait().unwrap().is_none();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(still_running, "kubectl get -w ended within 30 s");
    kubectl_ok([
        "delete",
        "clusterrolebinding",
        &format!("{ns}-remote-reader"),
    ]);
}

#[test]
fn a_jvm_client_sends_proxy_credentials_after_the_407() {
    let e = env("fwd-jvm");
    e.ready();
    let dir = e.scratch.path();
    run(Command::new("keytool")
        .current_dir(dir)
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "proxy",
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
            "-keystore",
            "trust.p12",
            "-file",
        ])
        .arg(&e.proxy_ca));
    let program = r#"
import java.net.*;
import java.io.*;
public class Fetch {
    public static void main(String[] args) throws Exception {
        final String user = args[1], token = args[2];
        Authenticator.setDefault(new Authenticator() {
            protected PasswordAuthentication getPasswordAuthentication() {
                if (getRequestorType() != RequestorType.PROXY) return null;
                return new PasswordAuthentication(user, token.toCharArray());
            }
        });
        // The proxy of https.proxyHost/https.proxyPort, given explicitly: the JDK never
        // proxies loopback destinations through the system properties alone.
        Proxy proxy = new Proxy(Proxy.Type.HTTP, new InetSocketAddress(
            System.getProperty("https.proxyHost"), Integer.getInteger("https.proxyPort")));
        HttpURLConnection c = (HttpURLConnection) new URL(args[0]).openConnection(proxy);
        System.out.println(c.getResponseCode());
        try (InputStream in = c.getInputStream()) { System.out.println(new String(in.readAllBytes(), "UTF-8")); }
    }
}
"#;
    std::fs::write(dir.join("Fetch.java"), program).unwrap();
    let out = Command::new("java")
        .current_dir(dir)
        .arg("-Dhttps.proxyHost=127.0.0.1")
        .arg(format!("-Dhttps.proxyPort={}", e.proxy.port))
        .arg("-Djdk.http.auth.tunneling.disabledSchemes=")
        .arg(format!(
            "-Djavax.net.ssl.trustStore={}",
            dir.join("trust.p12").display()
        ))
        .arg("-Djavax.net.ssl.trustStorePassword=changeit")
        .args([
            "Fetch.java",
            &format!("{}/echo/jvm", e.secure.url()),
            &format!("{}/secure", e.ns.name()),
            &e.token,
        ])
        .output()
        .expect("run java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "java: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("200"), "{stdout}");
    assert!(stdout.contains(BASIC), "{stdout}");
    // It sent its proxy credentials only after the proxy's 407.
    let challenges = connectors_e2e::process::metric_value(
        &e.proxy.metrics(),
        r#"connectors_proxy_requests_total{mode="connect",code="407",class=""}"#,
    );
    assert!(
        challenges >= 1.0,
        "no 407 was answered to the JVM's CONNECT"
    );
}
