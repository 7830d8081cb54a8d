//! The resolving stage with scripted answers, on tokio's paused clock (no real waiting).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::*;

/// Answers each name from a script: one answer per lookup, the last one repeated; each after
/// a delay.
#[derive(Default)]
struct Script {
    answers: Mutex<BTreeMap<String, VecDeque<(Duration, Answer)>>>,
    asked: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Script {
    fn with(self, name: &str, answers: Vec<(Duration, Answer)>) -> Self {
        self.answers
            .lock()
            .unwrap()
            .insert(name.to_owned(), answers.into());
        self
    }
}

impl Lookup for Script {
    fn lookup(&self, name: &str) -> LookupFuture {
        self.asked
            .lock()
            .unwrap()
            .push((name.to_owned(), Instant::now()));
        let mut answers = self.answers.lock().unwrap();
        let script = answers.get_mut(name).expect("a scripted name");
        let (delay, answer) = if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script[0].clone()
        };
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
        })
    }
}

fn addresses(ips: &[&str], ttl: u64) -> (Duration, Answer) {
    (
        Duration::ZERO,
        Answer::Addresses {
            addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            ttl: Duration::from_secs(ttl),
        },
    )
}

fn not_found(ttl: Option<u64>) -> (Duration, Answer) {
    (
        Duration::ZERO,
        Answer::NotFound {
            why: "NXDOMAIN".into(),
            ttl: ttl.map(Duration::from_secs),
        },
    )
}

fn failed() -> (Duration, Answer) {
    (
        Duration::ZERO,
        Answer::Failed {
            why: "timed out".into(),
        },
    )
}

/// An input whose Ingress (of weir's class) routes to ExternalName Services named after
/// `external_names`, plus a Service with endpoints.
fn input(external_names: &[&str]) -> Arc<Input> {
    let mut paths = vec![serde_json::json!({"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"number": 80}}}})];
    let mut services = vec![
        serde_json::json!({"metadata": {"name": "web", "namespace": "d"},
        "spec": {"ports": [{"port": 80}]}}),
    ];
    for (i, name) in external_names.iter().enumerate() {
        paths.push(
            serde_json::json!({"path": format!("/{i}"), "pathType": "Prefix",
            "backend": {"service": {"name": format!("ext-{i}"), "port": {"number": 80}}}}),
        );
        services.push(
            serde_json::json!({"metadata": {"name": format!("ext-{i}"), "namespace": "d"},
            "spec": {"type": "ExternalName", "externalName": name}}),
        );
    }
    let ingress = serde_json::json!({"metadata": {"name": "i", "namespace": "d"},
        "spec": {"ingressClassName": "weir", "rules": [{"host": "a.com", "http": {"paths": paths}}]}});
    Arc::new(Input {
        ingresses: vec![Arc::new(serde_json::from_value(ingress).unwrap())],
        services: services
            .into_iter()
            .map(|s| Arc::new(serde_json::from_value(s).unwrap()))
            .collect(),
        ..Input::default()
    })
}

/// The stage running on `script`, fed by the returned sender, passing on to the receiver.
struct Stage {
    source: watch::Sender<Option<Arc<Input>>>,
    out: watch::Receiver<Option<Arc<Input>>>,
    asked: Arc<Mutex<Vec<(String, Instant)>>>,
    started: Instant,
    _cancel: tokio_util::sync::DropGuard,
}

impl Stage {
    fn start(script: Script) -> Stage {
        let (source, inputs) = watch::channel(None);
        let (tx, out) = watch::channel(None);
        let cancel = CancellationToken::new();
        let asked = script.asked.clone();
        let stage = ExternalNames::new(script, BuildConfig::default());
        tokio::spawn(stage.run(inputs, tx, cancel.clone()));
        Stage {
            source,
            out,
            asked,
            started: Instant::now(),
            _cancel: cancel.drop_guard(),
        }
    }

    /// The next input passed on and when (since the start), or `None` within `limit`.
    async fn next_within(&mut self, limit: Duration) -> Option<(Arc<Input>, Duration)> {
        tokio::time::timeout(limit, self.out.changed())
            .await
            .ok()?
            .unwrap();
        let input = self.out.borrow_and_update().clone().unwrap();
        Some((input, self.started.elapsed()))
    }

    /// The next input passed on (within an hour).
    async fn next(&mut self) -> (Arc<Input>, Duration) {
        self.next_within(Duration::from_secs(3600))
            .await
            .expect("an input within an hour")
    }

    /// When each lookup of `name` started, since the start.
    fn asked(&self, name: &str) -> Vec<Duration> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, at)| at.duration_since(self.started))
            .collect()
    }
}

fn answer(input: &Input, name: &str) -> Option<NameAnswer> {
    input.external_names.get(name).cloned()
}

fn ips(list: &[&str]) -> NameAnswer {
    NameAnswer::Addresses(list.iter().map(|ip| ip.parse().unwrap()).collect())
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn resolves_before_passing_on_and_again_at_the_ttl() {
    let script = Script::default().with(
        "db.example.com",
        vec![
            addresses(&["10.0.0.2", "10.0.0.1", "10.0.0.1"], 60),
            // The same set in another order: nothing to pass on.
            addresses(&["10.0.0.1", "10.0.0.2"], 60),
            addresses(&["10.0.0.3"], 60),
        ],
    );
    let mut stage = Stage::start(script);
    stage.source.send_replace(Some(input(&["db.example.com"])));
    let (first, at) = stage.next().await;
    assert_eq!(at, Duration::ZERO);
    assert_eq!(
        first.services.len(),
        2,
        "the source's objects are passed on"
    );
    assert_eq!(
        answer(&first, "db.example.com"),
        Some(ips(&["10.0.0.1", "10.0.0.2"]))
    );
    let (changed, at) = stage.next().await;
    assert_eq!(
        at,
        120 * SECOND,
        "the unchanged answer at 60 s passed nothing on"
    );
    assert_eq!(answer(&changed, "db.example.com"), Some(ips(&["10.0.0.3"])));
    assert_eq!(
        stage.asked("db.example.com"),
        [Duration::ZERO, 60 * SECOND, 120 * SECOND]
    );
}

#[tokio::test(start_paused = true)]
async fn ttls_are_clamped() {
    let script = Script::default()
        .with("zero.example.com", vec![addresses(&["10.0.0.1"], 0)])
        .with("day.example.com", vec![addresses(&["10.0.0.2"], 86_400)]);
    let mut stage = Stage::start(script);
    stage
        .source
        .send_replace(Some(input(&["zero.example.com", "day.example.com"])));
    stage.next().await;
    assert!(stage.next_within(650 * SECOND).await.is_none());
    let zero = stage.asked("zero.example.com");
    assert_eq!(zero[..3], [Duration::ZERO, 5 * SECOND, 10 * SECOND]);
    assert_eq!(
        stage.asked("day.example.com"),
        [Duration::ZERO, 300 * SECOND, 600 * SECOND]
    );
}

#[tokio::test(start_paused = true)]
async fn a_name_that_does_not_exist_is_asked_again_after_its_negative_ttl() {
    let script = Script::default().with(
        "new.example.com",
        vec![
            not_found(Some(20)),
            not_found(None),
            addresses(&["10.0.0.1"], 60),
        ],
    );
    let mut stage = Stage::start(script);
    stage.source.send_replace(Some(input(&["new.example.com"])));
    let (first, _) = stage.next().await;
    assert_eq!(
        answer(&first, "new.example.com"),
        Some(NameAnswer::Failed("NXDOMAIN".into()))
    );
    let (resolved, at) = stage.next().await;
    assert_eq!(at, 50 * SECOND, "20 s, then the default 30 s");
    assert_eq!(
        answer(&resolved, "new.example.com"),
        Some(ips(&["10.0.0.1"]))
    );
}

#[tokio::test(start_paused = true)]
async fn failed_lookups_keep_the_last_addresses_for_a_while_and_back_off() {
    let script = Script::default().with(
        "db.example.com",
        vec![addresses(&["10.0.0.1"], 60), failed()],
    );
    let mut stage = Stage::start(script);
    stage.source.send_replace(Some(input(&["db.example.com"])));
    stage.next().await;
    // The answer expires at 60 s; lookups fail from then on; the last addresses stand in for
    // 300 s more.
    let (failed, at) = stage.next().await;
    assert_eq!(
        answer(&failed, "db.example.com"),
        Some(NameAnswer::Failed("timed out".into()))
    );
    assert!(at >= 360 * SECOND && at < 420 * SECOND, "{at:?}");
    let asked = stage.asked("db.example.com");
    let pauses: Vec<u64> = asked.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(pauses[..6], [60, 2, 4, 8, 16, 32]);
    assert!(pauses[6..].iter().all(|p| *p == 60), "{pauses:?}");
}

#[tokio::test(start_paused = true)]
async fn an_input_waits_a_little_for_new_names_then_goes_on_without_them() {
    let slow = (
        10 * SECOND,
        Answer::Addresses {
            addresses: vec!["10.0.0.9".parse().unwrap()],
            ttl: 60 * SECOND,
        },
    );
    let script = Script::default().with("slow.example.com", vec![slow]);
    let mut stage = Stage::start(script);
    let plain = input(&[]);
    stage.source.send_replace(Some(plain.clone()));
    let (first, at) = stage.next().await;
    assert_eq!(at, Duration::ZERO, "no names: passed on at once");
    assert!(Arc::ptr_eq(&first, &plain), "as it is, not copied");
    stage
        .source
        .send_replace(Some(input(&["slow.example.com"])));
    let (held, at) = stage.next().await;
    assert_eq!(at, 2 * SECOND, "held for Timing::hold");
    assert_eq!(answer(&held, "slow.example.com"), None);
    let (answered, at) = stage.next().await;
    assert_eq!(at, 10 * SECOND);
    assert_eq!(
        answer(&answered, "slow.example.com"),
        Some(ips(&["10.0.0.9"]))
    );
}

#[tokio::test(start_paused = true)]
async fn names_no_longer_referenced_are_forgotten() {
    let script = Script::default()
        .with("a.example.com", vec![addresses(&["10.0.0.1"], 60)])
        .with("b.example.com", vec![addresses(&["10.0.0.2"], 60)]);
    let mut stage = Stage::start(script);
    stage
        .source
        .send_replace(Some(input(&["a.example.com", "b.example.com"])));
    stage.next().await;
    tokio::time::sleep(30 * SECOND).await;
    stage.source.send_replace(Some(input(&["b.example.com"])));
    let (input, at) = stage.next().await;
    assert_eq!(at, 30 * SECOND);
    assert_eq!(input.external_names.len(), 1);
    assert!(stage.next_within(200 * SECOND).await.is_none());
    assert_eq!(stage.asked("a.example.com"), [Duration::ZERO]);
    assert_eq!(stage.asked("b.example.com").len(), 4);
}

#[tokio::test]
async fn the_system_resolver_answers_localhost_and_invalid_names_without_a_network() {
    let resolver = SystemResolver::new();
    match resolver.lookup("localhost").await {
        Answer::Addresses { addresses, .. } => {
            assert_eq!(addresses, [IpAddr::from([127, 0, 0, 1])]);
        }
        other => panic!("localhost: {other:?}"),
    }
    match resolver.lookup("does-not-exist.invalid").await {
        Answer::NotFound { why, .. } => assert!(why.contains("NXDOMAIN"), "{why}"),
        other => panic!(".invalid: {other:?}"),
    }
}
