//! Tests of the per-server security keys: TLS files, mutual TLS and the
//! signing key, in `[delivery]` and `[[carbon_copy]]`.

use std::path::{Path, PathBuf};

use super::tests::{one_problem, problems};
use super::*;

/// PEM files made for the test: a CA, a server certificate and a client
/// certificate signed by it, and a key of another pair.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["gw-lobby".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca, &ca_key)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let files: [(&str, String); 6] = [
            ("ca.pem", ca.pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
            ("other.key", other_key.serialize_pem()),
            ("garbage.pem", "this is not PEM\n".to_string()),
            ("key.txt", "0123456789abcdef-from-a-file\n".to_string()),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `key = "PATH"` for the file `name`.
    fn key(&self, key: &str, name: &str) -> String {
        format!("{key} = {:?}\n", self.path(name).display().to_string())
    }
}

fn with_delivery(lines: &str) -> String {
    format!(
        "[gateway]\nname = \"gw\"\n\n[[ports]]\nname = \"pbx1\"\ndevice = \"/dev/ttyUSB0\"\n\n[delivery]\n{lines}"
    )
}

fn with_copy(lines: &str) -> String {
    format!(
        "[gateway]\nname = \"gw\"\n\n[[ports]]\nname = \"pbx1\"\ndevice = \"/dev/ttyUSB0\"\n\n[[carbon_copy]]\nname = \"audit\"\n{lines}"
    )
}

const KEY: &str = "0123456789abcdef-very-secret";

#[test]
fn https_servers_with_ca_client_certificate_and_key() {
    let pki = Pki::new();
    let text = with_delivery(&format!(
        "primary = \"https://billing-a:8443/billing\"\nsecondary = \"https://billing-b/billing\"\n{}{}{}secret_key = \"{KEY}\"\n",
        pki.key("ca_file", "ca.pem"),
        pki.key("client_cert", "client.pem"),
        pki.key("client_key", "client.key"),
    ));
    let config = from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let d = config.delivery.unwrap();
    assert!(d.primary.is_https());
    assert_eq!(d.primary.port(), 8443);
    assert_eq!(d.secondary.as_ref().unwrap().port(), 443);
    let sec = &d.security;
    assert_eq!(
        sec.tls.ca_file.as_deref(),
        Some(pki.path("ca.pem").as_path())
    );
    assert_eq!(
        sec.tls.client_cert.as_deref(),
        Some(pki.path("client.pem").as_path())
    );
    assert_eq!(
        sec.tls.client_key.as_deref(),
        Some(pki.path("client.key").as_path())
    );
    assert_eq!(sec.secret_key.as_ref().unwrap().expose(), KEY.as_bytes());
    assert!(sec.tls.check().is_ok());
    assert!(sec.tls.client_pair().unwrap().is_some());
    // Never shown.
    let shown = format!("{:?} {:#?}", d.primary, d);
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("SecretKey(<redacted>)"), "{shown}");
}

#[test]
fn https_without_tls_keys_uses_the_built_in_roots() {
    let config =
        from_toml_str(&with_delivery("primary = \"https://billing-a/billing\"\n")).unwrap();
    let d = config.delivery.unwrap();
    assert!(d.security.is_default());
    // Debug of a URL without settings is the URL alone.
    assert_eq!(
        format!("{:?}", d.primary),
        "ServerUrl(\"https://billing-a/billing\")"
    );
}

#[test]
fn carbon_copies_have_their_own_settings() {
    let pki = Pki::new();
    let text = with_copy(&format!(
        "url = \"https://audit:9443/cc\"\nreliable = true\n{}secret_key_file = {:?}\n",
        pki.key("ca_file", "ca.pem"),
        pki.path("key.txt").display().to_string(),
    ));
    let config = from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let cc = &config.carbon_copies[0];
    let sec = &cc.security;
    assert_eq!(
        sec.tls.ca_file.as_deref(),
        Some(pki.path("ca.pem").as_path())
    );
    assert_eq!(sec.tls.client_cert, None);
    // The file's line break is not part of the key.
    assert_eq!(
        sec.secret_key.as_ref().unwrap().expose(),
        b"0123456789abcdef-from-a-file"
    );
}

#[test]
fn tls_file_problems_name_the_key() {
    let pki = Pki::new();
    let https = "primary = \"https://a/\"\n";
    let missing = pki.path("nowhere.pem").display().to_string();
    #[rustfmt::skip]
    let cases = [
        (format!("{https}ca_file = {missing:?}\n"), format!("delivery.ca_file: cannot read {missing:?}: No such file or directory")),
        (
            format!("{https}{}", pki.key("ca_file", "garbage.pem")),
            format!(
                "delivery.ca_file: {:?} holds no PEM certificate",
                pki.path("garbage.pem").display().to_string()
            ),
        ),
        (format!("{https}ca_file = \"\"\n"), "delivery.ca_file: must not be empty".to_string()),
        (format!("{https}{}", pki.key("client_cert", "client.pem")), "delivery.client_key: missing; client_cert needs the private key".to_string()),
        (format!("{https}{}", pki.key("client_key", "client.key")), "delivery.client_cert: missing; client_key needs the certificate".to_string()),
        (
            format!(
                "{https}{}{}",
                pki.key("client_cert", "client.key"),
                pki.key("client_key", "client.key")
            ),
            format!(
                "delivery.client_cert: {:?} holds no PEM certificate",
                pki.path("client.key").display().to_string()
            ),
        ),
        (
            format!(
                "{https}{}{}",
                pki.key("client_cert", "client.pem"),
                pki.key("client_key", "client.pem")
            ),
            format!(
                "delivery.client_key: {:?} holds no PEM private key",
                pki.path("client.pem").display().to_string()
            ),
        ),
        (
            format!(
                "{https}{}{}",
                pki.key("client_cert", "client.pem"),
                pki.key("client_key", "other.key")
            ),
            format!(
                "delivery.client_key: {:?} does not fit client_cert",
                pki.path("other.key").display().to_string()
            ),
        ),
        // With a refused secondary, whether a server is https is not known:
        // the TLS keys are not judged against it.
        (
            format!("primary = \"http://a/\"\nsecondary = \"nope\"\n{}", pki.key("ca_file", "ca.pem")),
            "delivery.secondary: \"nope\" is not an absolute URL".to_string(),
        ),
        // A path that is refused is also a key without effect on http://.
        (
            "primary = \"http://a/\"\nca_file = \"\"\n".to_string(),
            "delivery.ca_file: must not be empty".to_string(),
        ),
    ];
    for (lines, expected) in cases {
        one_problem(&with_delivery(&lines), &expected);
    }
    // TLS keys for http:// servers have no effect: warnings, not errors.
    let first_warning = |text: String| from_toml_str(&text).unwrap().warnings[0].to_string();
    assert_eq!(
        first_warning(with_delivery(&format!("primary = \"http://a/\"\n{}", pki.key("ca_file", "ca.pem")))),
        "delivery.ca_file: has no effect: only https:// servers use TLS, and no server of [delivery] is https://"
    );
    // The same for a carbon copy, at its own keys.
    one_problem(
        &with_copy(&format!("url = \"https://a/\"\nca_file = {missing:?}\n")),
        "carbon_copy[0].ca_file: cannot read",
    );
    assert_eq!(
        first_warning(with_copy(&format!("url = \"http://a/\"\n{}", pki.key("client_cert", "client.pem")))),
        "carbon_copy[0].client_cert: has no effect: only https:// servers use TLS, and the url is http://"
    );
    // One https server of two is enough for the section's TLS keys.
    let text = with_delivery(&format!(
        "primary = \"http://a/\"\nsecondary = \"https://b/\"\n{}",
        pki.key("ca_file", "ca.pem")
    ));
    assert!(from_toml_str(&text).is_ok());
}

#[test]
fn secret_key_problems_never_show_the_key() {
    let pki = Pki::new();
    let http = "primary = \"http://a/\"\n";
    #[rustfmt::skip]
    let cases = [
        (format!("{http}secret_key = \"short-secret\"\n"), "delivery.secret_key: is 12 bytes long; use at least 16".to_string()),
        (format!("{http}secret_key = 123456789012345678\n"), "delivery.secret_key: expected a string, found a number".to_string()),
        (
            format!(
                "{http}secret_key = \"{KEY}\"\n{}",
                pki.key("secret_key_file", "key.txt")
            ),
            "delivery.secret_key_file: give secret_key or secret_key_file, not both".to_string(),
        ),
        (
            format!("{http}{}", pki.key("secret_key_file", "nowhere")),
            format!(
                "delivery.secret_key_file: cannot read {:?}",
                pki.path("nowhere").display().to_string()
            ),
        ),
    ];
    for (lines, expected) in cases {
        let text = with_delivery(&lines);
        one_problem(&text, &expected);
        let found = problems(&text).join("\n");
        for secret in ["short-secret", "123456789012345678", KEY] {
            assert!(!found.contains(secret), "{found}");
        }
    }
    std::fs::write(pki.path("short.txt"), "tiny-secret\n").unwrap();
    let text = with_delivery(&format!(
        "{http}{}",
        pki.key("secret_key_file", "short.txt")
    ));
    one_problem(
        &text,
        &format!(
            "delivery.secret_key_file: the key in {:?} is 11 bytes long",
            pki.path("short.txt").display().to_string()
        ),
    );
    assert!(!problems(&text)[0].contains("tiny-secret"));
}

#[test]
fn secret_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billbox.toml");
    std::fs::write(&path, with_delivery("primary = \"http://a/\"\n")).unwrap();
    let vars = [("BILLBOX__DELIVERY__SECRET_KEY".to_string(), KEY.to_string())];
    let config = load_with_env(&path, vars.into_iter().collect()).unwrap();
    let d = config.delivery.unwrap();
    assert_eq!(
        d.security.secret_key.as_ref().unwrap().expose(),
        KEY.as_bytes()
    );
    let vars = [(
        "BILLBOX__DELIVERY__SECRET_KEY".to_string(),
        "too-short".to_string(),
    )];
    let err = load_with_env(&path, vars.into_iter().collect()).unwrap_err();
    let found = err.to_string();
    assert!(
        found.contains("delivery.secret_key: is 9 bytes long")
            && found.contains("BILLBOX__DELIVERY__SECRET_KEY")
            && !found.contains("too-short"),
        "{found}"
    );
}

#[test]
fn secret_keys_compare_and_read_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k");
    std::fs::write(&file, format!("{KEY}\r\n")).unwrap();
    assert_eq!(
        SecretKey::from_file(&file).unwrap(),
        SecretKey::new(KEY).unwrap()
    );
    std::fs::write(&file, [0xff, 0xfe, 0x00, 0x41].repeat(8)).unwrap();
    let err = SecretKey::from_file(&file).unwrap_err();
    assert!(matches!(err, KeyError::NotText(_)), "{err}");
    assert!(err.to_string().contains("is not UTF-8 text"));
    let err = SecretKey::from_file(Path::new("/nonexistent/key")).unwrap_err();
    assert!(matches!(err, KeyError::Read(..)), "{err}");
    assert!(err
        .to_string()
        .starts_with("cannot read \"/nonexistent/key\""));
}

#[test]
fn tls_and_key_problems_are_reported_together() {
    let text = with_delivery(
        "primary = \"https://a/\"\nca_file = \"/nonexistent/ca.pem\"\nsecret_key = \"short\"\n",
    );
    let keys: Vec<String> = match from_toml_str(&text) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.problems().iter().map(|p| p.key.clone()).collect(),
    };
    assert_eq!(keys, ["delivery.secret_key", "delivery.ca_file"]);
}

#[test]
fn a_tls_key_of_the_wrong_type_does_not_stop_the_others_being_read() {
    let text =
        with_delivery("primary = \"https://a/\"\nca_file = 5\nclient_cert = \"/etc/hosts\"\n");
    assert_eq!(
        problems(&text),
        [
            "delivery.ca_file: expected a string, found integer 5",
            "delivery.client_key: missing; client_cert needs the private key of its certificate, \
             e.g. client_key = \"/etc/billbox/client.key\"",
        ]
    );
}

#[test]
fn secret_and_tls_rules_kept_from_before() {
    // Both a key and a file: that is the problem, whatever the file.
    one_problem(
        &with_delivery(&format!(
            "primary = \"http://a/\"\nsecret_key = \"{KEY}\"\nsecret_key_file = \"\"\n"
        )),
        "delivery.secret_key_file: give secret_key or secret_key_file, not both",
    );
    // A missing client key or certificate is a missing key: when variables
    // made keys of the section, the problem says so.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let path = dir.path().join("billbox.toml");
    let lines = format!(
        "primary = \"https://a/\"\n{}",
        pki.key("client_cert", "client.pem")
    );
    std::fs::write(&path, with_delivery(&lines)).unwrap();
    let vars = [("BILLBOX__DELIVERY__ATTEMPTS".to_string(), "3".to_string())];
    let err = load_with_env(&path, vars.into_iter().collect()).unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    assert!(err.problems()[0].is_missing());
    assert!(
        err.to_string()
            .starts_with("delivery.client_key: missing; client_cert needs")
            && err.to_string().ends_with(
                "([delivery] has a key from environment variable BILLBOX__DELIVERY__ATTEMPTS)"
            ),
        "{err}"
    );
    // An empty ag_secret_key_file is refused like every other path.
    let text = "[gateway]\nname = \"gw\"\n[transactions]\nlisten = \"127.0.0.1:9120\"\nproperty_id = \"H\"\nag_secret_key_file = \"\"\n";
    one_problem(text, "transactions.ag_secret_key_file: must not be empty");
}
