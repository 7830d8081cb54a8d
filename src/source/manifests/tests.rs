use std::fs;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;

fn write(dir: &TempDir, rel: &str, text: &str) {
    let path = dir.path().join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, text).unwrap();
}

fn load(dir: &TempDir) -> (ManifestSource, Loaded) {
    let mut s = ManifestSource::new(dir.path()).unwrap();
    let loaded = s.load();
    (s, loaded)
}

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn names<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(objects: &[Arc<T>]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            let m = o.metadata();
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or("-"),
                m.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

const ALL_SIX: &str = r#"
# leading comment, then an empty document
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: weir
spec:
  controller: weir.dev/ingress-controller
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  ingressClassName: weir
  tls:
  - hosts: [shop.example.com]
    secretName: shop-tls
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              name: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: [10.0.0.1]
  conditions:
    ready: true
---
apiVersion: v1
kind: Endpoints
metadata:
  name: web
  namespace: shop
subsets:
- addresses:
  - ip: 10.0.0.1
  ports:
  - name: http
    port: 8080
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-tls
  namespace: shop
type: kubernetes.io/tls
data:
  tls.crt: Y2VydA==
  tls.key: a2V5
"#;

#[test]
fn multi_document_yaml_with_all_six_kinds() {
    let dir = TempDir::new().unwrap();
    write(&dir, "all.yaml", ALL_SIX);
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let i = &loaded.input;
    assert_eq!(names(&i.ingress_classes), ["-/weir"]);
    assert_eq!(names(&i.ingresses), ["shop/web"]);
    assert_eq!(names(&i.services), ["shop/web"]);
    assert_eq!(names(&i.endpoint_slices), ["shop/web-abc"]);
    assert_eq!(names(&i.endpoints), ["shop/web"]);
    assert_eq!(names(&i.secrets), ["shop/shop-tls"]);
    let data = i.secrets[0].data.as_ref().unwrap();
    assert_eq!(data["tls.crt"], ByteString(b"cert".to_vec()));
    let rule = &i.ingresses[0]
        .spec
        .as_ref()
        .unwrap()
        .rules
        .as_ref()
        .unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("shop.example.com"));
}

#[test]
fn list_kind_contributes_its_items() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "list.yaml",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {{name: d}}\n",
            service("a", 80).replace('\n', "\n  ").trim_end(),
            service("b", 81).replace('\n', "\n  ").trim_end(),
        ),
    );
    // A typed list as the API returns it: items carry no apiVersion/kind.
    write(
        &dir,
        "typed.json",
        r#"{"apiVersion":"v1","kind":"ServiceList","metadata":{},
            "items":[{"metadata":{"name":"c","namespace":"x"},"spec":{}}]}"#,
    );
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(
        names(&loaded.input.services),
        ["default/a", "default/b", "x/c"]
    );
}

#[test]
fn json_file_holds_one_object() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "svc.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"j","namespace":"n"},"spec":{"ports":[{"port":80}]}}"#,
    );
    write(&dir, "empty.json", "\n");
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(names(&loaded.input.services), ["n/j"]);
}

#[test]
fn unknown_kinds_are_skipped_silently() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "mixed.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec: {{}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{}---\napiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {{name: old}}\n",
            service("s", 80)
        ),
    );
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(names(&loaded.input.services), ["default/s"]);
    assert!(loaded.input.ingresses.is_empty());
}

#[test]
fn missing_kind_or_bad_body_is_an_error() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", "metadata: {name: x}\n");
    write(
        &dir,
        "b.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: bad}}\nspec:\n  ports: 80\n",
            service("ok", 80)
        ),
    );
    write(
        &dir,
        "c.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n",
    );
    let (_, loaded) = load(&dir);
    assert!(
        loaded.input.services.is_empty(),
        "a bad file applies nothing"
    );
    let found: Vec<(String, usize)> = loaded
        .errors
        .iter()
        .map(|e| match e {
            ManifestError::Parse {
                path,
                document,
                message,
                ..
            } => (
                format!("{}: {message}", path.file_name().unwrap().to_string_lossy()),
                *document,
            ),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].0.starts_with("a.yaml: missing apiVersion or kind"));
    assert!(
        found[1]
            .0
            .starts_with("b.yaml: Service \"bad\": invalid type")
    );
    assert_eq!(found[1].1, 2);
    assert!(found[2].0.contains("metadata.name is required"));
}

#[test]
fn namespaced_objects_default_to_default() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "a.yaml",
        &format!(
            "{}---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: weir, namespace: ignored}}\n",
            service("s", 80)
        ),
    );
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(names(&loaded.input.services), ["default/s"]);
    assert_eq!(names(&loaded.input.ingress_classes), ["-/weir"]);
}

#[test]
fn string_data_is_merged_into_data() {
    let dir = TempDir::new().unwrap();
    write(
        &dir,
        "tls.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\ndata:\n  tls.key: b2xk\n  other: eA==\nstringData:\n  tls.crt: |\n    -----BEGIN CERTIFICATE-----\n  tls.key: new\n",
    );
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let secret = &loaded.input.secrets[0];
    assert_eq!(secret.string_data, None);
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data["tls.crt"].0, b"-----BEGIN CERTIFICATE-----\n".to_vec());
    assert_eq!(data["tls.key"].0, b"new".to_vec(), "stringData wins");
    assert_eq!(data["other"].0, b"x".to_vec());
}

#[test]
fn broken_file_keeps_its_last_good_objects_while_others_apply() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", &service("a", 80));
    write(&dir, "b.yaml", &service("b", 80));
    let (mut source, loaded) = load(&dir);
    assert_eq!(names(&loaded.input.services), ["default/a", "default/b"]);

    // a.yaml breaks in its second document; b.yaml changes.
    write(
        &dir,
        "a.yaml",
        &format!("{}---\nkind: [unclosed\n", service("a2", 80)),
    );
    write(&dir, "b.yaml", &service("b", 81));
    let loaded = source.load();
    assert_eq!(names(&loaded.input.services), ["default/a", "default/b"]);
    let b = &loaded.input.services[1];
    assert_eq!(b.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 81);
    let [
        ManifestError::Parse {
            path,
            document,
            line,
            column,
            message,
        },
    ] = &loaded.errors[..]
    else {
        panic!("{:?}", loaded.errors)
    };
    assert_eq!(path, &dir.path().join("a.yaml"));
    assert_eq!(*document, 2);
    assert_eq!(*line, Some(10));
    assert!(column.is_some());
    assert!(!message.is_empty());
    let shown = loaded.errors[0].to_string();
    assert!(shown.contains("a.yaml: document 2: "), "{shown}");

    // A file that never parsed contributes nothing.
    write(&dir, "c.json", "{\"apiVersion\": ");
    let loaded = source.load();
    assert_eq!(names(&loaded.input.services), ["default/a", "default/b"]);
    assert_eq!(loaded.errors.len(), 2);
    let ManifestError::Parse { line, document, .. } = &loaded.errors[1] else {
        panic!()
    };
    assert_eq!((*line, *document), (Some(1), 1));

    // Fixed: the new content applies.
    write(&dir, "a.yaml", &service("a2", 80));
    let loaded = source.load();
    assert_eq!(names(&loaded.input.services), ["default/a2", "default/b"]);
}

#[test]
fn deleted_file_removes_its_objects() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", &service("a", 80));
    write(&dir, "sub/b.yml", &service("b", 80));
    let (mut source, loaded) = load(&dir);
    assert_eq!(loaded.input.services.len(), 2);
    fs::remove_file(dir.path().join("sub/b.yml")).unwrap();
    let loaded = source.load();
    assert_eq!(names(&loaded.input.services), ["default/a"]);
    // Also when the file was broken at the time: its last good objects go too.
    write(&dir, "a.yaml", "{{{");
    assert_eq!(source.load().input.services.len(), 1);
    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let loaded = source.load();
    assert!(loaded.input.services.is_empty());
    assert!(loaded.errors.is_empty());
}

#[test]
fn unchanged_files_share_their_objects_across_loads() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", &service("a", 80));
    write(&dir, "b.yaml", &service("b", 80));
    let (mut source, first) = load(&dir);
    write(&dir, "b.yaml", &service("b", 8080));
    let second = source.load();
    let (a1, b1) = (&first.input.services[0], &first.input.services[1]);
    let (a2, b2) = (&second.input.services[0], &second.input.services[1]);
    assert!(
        Arc::ptr_eq(a1, a2),
        "a.yaml was not read again: the same object"
    );
    assert!(!Arc::ptr_eq(b1, b2));
    assert!(!same(&first.input, &second.input));

    // The same object parsed again (from another file): another `Arc`, the same input.
    fs::remove_file(dir.path().join("b.yaml")).unwrap();
    write(&dir, "c.yaml", &service("b", 8080));
    let third = source.load();
    assert!(!Arc::ptr_eq(b2, &third.input.services[1]));
    assert!(same(&second.input, &third.input));
    assert!(!same(&first.input, &third.input));
}

/// `load_paths` with what a watcher reports gives what a full load gives, reading only the
/// files named, and falls back to a full load where a path is more than a file.
#[test]
fn loading_the_reported_paths_matches_a_full_load() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", &service("a", 80));
    write(&dir, "sub/b.yaml", &service("b", 80));
    write(&dir, "notes.txt", "not a manifest");
    let (mut source, first) = load(&dir);
    let reported = |paths: &[&str]| -> BTreeSet<PathBuf> {
        paths.iter().map(|p| dir.path().join(p)).collect()
    };
    let fresh = || load(&dir).1.input;

    // An edit: only that file is read again.
    write(&dir, "a.yaml", &service("a", 81));
    let edited = source.load_paths(&reported(&["a.yaml"])).input;
    assert!(same(&edited, &fresh()));
    assert!(!same(&edited, &first.input));
    assert!(Arc::ptr_eq(&first.input.services[1], &edited.services[1]));

    // An editor's save (a hidden temporary file renamed over the file), and a file that is
    // not a manifest: the temporary file and the text file change nothing.
    write(&dir, ".a.yaml.swp", &service("a", 82));
    fs::rename(dir.path().join(".a.yaml.swp"), dir.path().join("a.yaml")).unwrap();
    write(&dir, "notes.txt", &service("n", 80));
    let saved = source
        .load_paths(&reported(&[".a.yaml.swp", "a.yaml", "notes.txt"]))
        .input;
    assert!(same(&saved, &fresh()));
    assert_eq!(names(&saved.services), ["default/a", "default/b"]);

    // A removed directory drops what was read from under it.
    fs::remove_dir_all(dir.path().join("sub")).unwrap();
    let removed = source.load_paths(&reported(&["sub"])).input;
    assert_eq!(names(&removed.services), ["default/a"]);

    // A new directory (its files may have no events of their own) and a path outside DIR
    // make a full load.
    write(
        &dir,
        "new/deep/c.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}}"#,
    );
    let added = source.load_paths(&reported(&["new"])).input;
    assert_eq!(names(&added.services), ["default/a", "default/c"]);
    write(&dir, "d.yaml", &service("d", 80));
    let outside: BTreeSet<PathBuf> = [PathBuf::from("/elsewhere/x.yaml")].into();
    let everything = source.load_paths(&outside).input;
    assert_eq!(
        names(&everything.services),
        ["default/a", "default/d", "default/c"]
    );
    assert!(same(&everything, &fresh()));

    // A broken edit keeps the file's last good objects, as a full load does.
    write(&dir, "d.yaml", "{{{");
    let loaded = source.load_paths(&reported(&["d.yaml"]));
    assert_eq!(loaded.errors.len(), 1);
    assert!(same(&loaded.input, &everything));

    // DIR removed with its files: as when DIR cannot be listed, everything stays.
    let path = dir.path().to_owned();
    fs::remove_dir_all(&path).unwrap();
    let reported: BTreeSet<PathBuf> = [path.join("a.yaml"), path.join("new"), path].into();
    let gone = source.load_paths(&reported);
    assert!(same(&gone.input, &everything));
}

#[test]
fn duplicates_keep_the_first_in_sorted_path_order() {
    let dir = TempDir::new().unwrap();
    write(&dir, "b.yaml", &service("s", 2));
    write(&dir, "a/z.yaml", &service("s", 1));
    write(
        &dir,
        "c.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: other}\n",
    );
    for _ in 0..2 {
        let (_, loaded) = load(&dir);
        assert_eq!(names(&loaded.input.services), ["default/s", "other/s"]);
        let port = loaded.input.services[0]
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()[0]
            .port;
        assert_eq!(port, 1, "a/z.yaml sorts before b.yaml");
        let [
            ManifestError::Duplicate {
                path,
                object,
                first,
                document,
            },
        ] = &loaded.errors[..]
        else {
            panic!("{:?}", loaded.errors)
        };
        assert_eq!(path, &dir.path().join("b.yaml"));
        assert_eq!(first, &dir.path().join("a/z.yaml"));
        assert_eq!(object, "Service default/s");
        assert_eq!(*document, 1);
    }
}

#[test]
fn duplicates_are_found_when_identity_hashes_collide() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", &service("s", 1));
    write(
        &dir,
        "b.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: other}\n",
    );
    write(&dir, "c.yaml", &service("t", 3));
    write(&dir, "d.yaml", &service("t", 4));
    write(&dir, "e.yaml", &service("s", 5));
    let (mut source, _) = load(&dir);
    // Every object with one hash: the merge must tell them apart by their names.
    for file in source.cache.values_mut() {
        for parsed in &mut file.objects {
            parsed.identity = 7;
        }
    }
    let mut errors = Vec::new();
    let input = source.merge(&mut errors);
    assert_eq!(
        names(&input.services),
        ["default/s", "other/s", "default/t"]
    );
    let duplicates: Vec<(String, PathBuf, PathBuf)> = errors
        .iter()
        .map(|e| match e {
            ManifestError::Duplicate {
                path,
                object,
                first,
                ..
            } => (object.clone(), path.clone(), first.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let at = |name: &str| dir.path().join(name);
    assert_eq!(
        duplicates,
        [
            ("Service default/t".to_owned(), at("d.yaml"), at("c.yaml")),
            ("Service default/s".to_owned(), at("e.yaml"), at("a.yaml")),
        ]
    );
}

#[test]
fn hidden_and_other_files_are_skipped() {
    let dir = TempDir::new().unwrap();
    write(&dir, "ok.YAML", &service("ok", 80));
    write(&dir, ".hidden.yaml", &service("hidden", 80));
    write(&dir, ".git/config.yaml", &service("git", 80));
    write(&dir, ".ok.yaml.swp", "binary junk {{{");
    write(&dir, "ok.yaml~", &service("backup", 80));
    write(&dir, "README.md", "# not a manifest");
    write(&dir, "deep/er/x.yaml", &service("deep", 80));
    let (_, loaded) = load(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(
        names(&loaded.input.services),
        ["default/deep", "default/ok"]
    );
}

#[test]
fn new_fails_only_without_a_directory() {
    let dir = TempDir::new().unwrap();
    assert!(matches!(
        ManifestSource::new(dir.path().join("missing")),
        Err(ManifestError::Dir { .. })
    ));
    write(&dir, "f.yaml", "");
    assert!(matches!(
        ManifestSource::new(dir.path().join("f.yaml")),
        Err(ManifestError::Dir { .. })
    ));
    assert!(ManifestSource::new(dir.path()).is_ok());
}

/// Waits for the next published input; 5 s is a bound, not a delay.
async fn next(rx: &mut watch::Receiver<Option<Arc<Input>>>) -> Arc<Input> {
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("no new Input within 5 s")
        .expect("sender dropped");
    rx.borrow_and_update().clone().expect("Some(input)")
}

fn port(input: &Arc<Input>) -> i32 {
    input.services[0]
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()[0]
        .port
}

async fn run_edits(force_poll: bool) {
    let dir = TempDir::new().unwrap();
    write(&dir, "svc.yaml", &service("s", 80));
    let (tx, mut rx) = watch::channel(None);
    let cancel = CancellationToken::new();
    let source = ManifestSource::new(dir.path()).unwrap();
    let task = tokio::spawn(source.run_with(tx, cancel.clone(), force_poll));

    assert_eq!(port(&next(&mut rx).await), 80);

    // Plain edit.
    write(&dir, "svc.yaml", &service("s", 8080));
    assert_eq!(port(&next(&mut rx).await), 8080);

    // Editor-style save: write a temp file, rename it over the original.
    write(&dir, ".svc.yaml.tmp", &service("s", 9090));
    fs::rename(
        dir.path().join(".svc.yaml.tmp"),
        dir.path().join("svc.yaml"),
    )
    .unwrap();
    assert_eq!(port(&next(&mut rx).await), 9090);

    // Create and delete.
    write(
        &dir,
        "new/other.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"t"}}"#,
    );
    assert_eq!(next(&mut rx).await.services.len(), 2);
    fs::remove_dir_all(dir.path().join("new")).unwrap();
    assert_eq!(next(&mut rx).await.services.len(), 1);

    // Rewriting the same content is a change on disk but not in the objects: nothing is sent.
    // There is no event to wait for here, so wait a bounded time for one that must not come.
    write(&dir, "svc.yaml", &service("s", 9090));
    let got = tokio::time::timeout(Duration::from_millis(1500), rx.changed()).await;
    assert!(got.is_err(), "an identical Input was re-sent");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run() returns on cancel")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_publishes_changes_and_not_identical_inputs() {
    run_edits(false).await;
}

#[tokio::test]
async fn run_polls_when_it_cannot_watch() {
    run_edits(true).await;
}

#[tokio::test]
async fn broken_edit_keeps_serving_the_last_good_input() {
    let dir = TempDir::new().unwrap();
    write(&dir, "a.yaml", &service("a", 80));
    write(&dir, "b.yaml", &service("b", 80));
    let (tx, mut rx) = watch::channel(None);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        ManifestSource::new(dir.path())
            .unwrap()
            .run(tx, cancel.clone()),
    );
    assert_eq!(next(&mut rx).await.services.len(), 2);

    write(
        &dir,
        "a.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a\n",
    );
    write(&dir, "b.yaml", &service("b", 81));
    let input = next(&mut rx).await;
    assert_eq!(names(&input.services), ["default/a", "default/b"]);
    assert_eq!(
        input.services[1]
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()[0]
            .port,
        81
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// The event-driven path must really be in use where inotify works (Linux), not a silent
/// fallback to polling.
#[tokio::test]
async fn the_watcher_is_used_when_available() {
    let dir = TempDir::new().unwrap();
    let trigger = super::watch::Trigger::new(dir.path(), false);
    assert!(matches!(trigger, super::watch::Trigger::Notify { .. }));
}

/// Generated manifest files against [`parse::parse_file`].
mod generated {
    use std::path::Path;

    use proptest::prelude::*;

    use super::super::ManifestError;
    use super::super::parse::parse_file;

    /// One document of a generated file.
    #[derive(Debug, Clone)]
    enum Doc {
        /// An object of a kind weir reads (`kind` indexes [`KINDS`]), in a namespace or none.
        Good {
            kind: usize,
            name: usize,
            ns: Option<usize>,
        },
        /// A `kind: List` of a Service and a ConfigMap.
        List { name: usize },
        /// A kind weir does not read: skipped.
        Unknown(usize),
        /// Only a comment: no object.
        Empty,
        /// A known kind whose body does not decode, or without a name, or without a kind.
        Broken(usize),
    }

    const KINDS: [(&str, &str); 7] = [
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Endpoints"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "IngressClass"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
    ];
    const NAMES: [&str; 3] = ["web", "a-b", "x1"];
    const NAMESPACES: [&str; 2] = ["shop", "default"];
    const UNKNOWN: [&str; 3] = [
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
        "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {name: old}\n",
    ];
    const BROKEN: [&str; 4] = [
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports: 80\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n",
        "metadata: {name: nokind}\n",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec: [1]\n",
    ];

    fn doc() -> impl Strategy<Value = Doc> {
        prop_oneof![
            6 => (0..KINDS.len(), 0..NAMES.len(), proptest::option::of(0..NAMESPACES.len()))
                .prop_map(|(kind, name, ns)| Doc::Good { kind, name, ns }),
            1 => (0..NAMES.len()).prop_map(|name| Doc::List { name }),
            1 => (0..UNKNOWN.len()).prop_map(Doc::Unknown),
            1 => Just(Doc::Empty),
            1 => (0..BROKEN.len()).prop_map(Doc::Broken),
        ]
    }

    /// `(Kind, namespace, name)`: what identifies an object.
    type Identity = (&'static str, Option<String>, String);

    /// A document's text and the identities of the objects it declares.
    fn render(doc: &Doc) -> (String, Vec<Identity>) {
        match *doc {
            Doc::Good { kind, name, ns } => {
                let (api_version, kind) = KINDS[kind];
                let name = NAMES[name];
                let ns_line = ns
                    .map(|ns| format!("  namespace: {}\n", NAMESPACES[ns]))
                    .unwrap_or_default();
                let body = match kind {
                    "Service" => "spec:\n  ports:\n  - port: 80\n    name: http\n",
                    "ConfigMap" => "data: {a: b}\n",
                    "Secret" => "type: Opaque\nstringData:\n  auth: 'u:$apr1$x$y'\n",
                    "Endpoints" => {
                        "subsets:\n- addresses: [{ip: 10.0.0.1}]\n  ports: [{port: 80}]\n"
                    }
                    "Ingress" => "spec:\n  ingressClassName: weir\n",
                    "IngressClass" => "spec: {controller: weir.dev/ingress-controller}\n",
                    _ => "addressType: IPv4\nendpoints: []\n",
                };
                let text = format!(
                    "apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n{ns_line}{body}"
                );
                let ns = (kind != "IngressClass")
                    .then(|| ns.map_or("default", |ns| NAMESPACES[ns]).to_owned());
                (text, vec![(kind, ns, name.to_owned())])
            }
            Doc::List { name } => {
                let name = NAMES[name];
                let text = format!(
                    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {{name: {name}}}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: {name}, namespace: shop}}\n"
                );
                let ids = vec![
                    ("Service", Some("default".to_owned()), name.to_owned()),
                    ("ConfigMap", Some("shop".to_owned()), name.to_owned()),
                ];
                (text, ids)
            }
            Doc::Unknown(i) => (UNKNOWN[i].to_owned(), vec![]),
            Doc::Empty => ("# nothing here\n".to_owned(), vec![]),
            Doc::Broken(i) => (BROKEN[i].to_owned(), vec![]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A multi-document file gives back the objects of its documents, in order and each
        /// with its document's number, skipping unknown kinds and empty documents; if any
        /// document is broken, the file is an error that names every broken document (and
        /// only those), and a syntax error at the end is reported at its document too.
        #[test]
        fn generated_files_parse_back_to_their_objects(
            docs in proptest::collection::vec(doc(), 1..8),
            syntax_error in any::<bool>(),
        ) {
            let mut text = String::new();
            let mut want = Vec::new();
            let mut broken = Vec::new();
            // Comments before the first `---` are no document in YAML (a comment between two
            // `---` is an empty one): the documents after count from 1.
            let uncounted = usize::from(matches!(docs[0], Doc::Empty));
            for (i, doc) in docs.iter().enumerate() {
                let (doc_text, ids) = render(doc);
                if i > 0 {
                    text.push_str("---\n");
                }
                text.push_str(&doc_text);
                let number = i + 1 - uncounted;
                want.extend(ids.into_iter().map(|id| (number, id)));
                if matches!(doc, Doc::Broken(_)) {
                    broken.push(number);
                }
            }
            if syntax_error {
                text.push_str("---\nkind: [unclosed\n");
                broken.push(docs.len() + 1 - uncounted);
            }
            match parse_file(Path::new("gen.yaml"), &text) {
                Ok(parsed) => {
                    prop_assert!(broken.is_empty(), "{:?} not reported in\n{}", broken, text);
                    let got: Vec<_> = parsed
                        .iter()
                        .map(|p| {
                            let (kind, ns, name) = p.object.identity();
                            (p.document, (kind, ns.map(str::to_owned), name.to_owned()))
                        })
                        .collect();
                    prop_assert_eq!(got, want, "{}", text);
                }
                Err(errors) => {
                    let documents: Vec<usize> = errors
                        .iter()
                        .map(|e| match e {
                            ManifestError::Parse { document, .. } => *document,
                            other => panic!("not a parse error: {other}"),
                        })
                        .collect();
                    prop_assert_eq!(documents, broken, "{}", text);
                }
            }
        }

        /// Any text, as YAML or as JSON, parses or is reported: never a panic.
        #[test]
        fn any_text_parses_or_is_reported(
            text in prop_oneof![
                "\\PC{0,200}",
                "([-:{}\\[\\],#&*!|>'\"%@` \\n]|[a-z]{1,6}|---\\n|  |<<|kind: |apiVersion: v1\\n|- ){0,40}",
            ],
        ) {
            for path in ["f.yaml", "f.json"] {
                if let Err(errors) = parse_file(Path::new(path), &text) {
                    prop_assert!(!errors.is_empty());
                }
            }
        }
    }
}
