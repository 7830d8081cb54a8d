//! Swapping routing tables under load never fails a request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use weir::model::PathRule;
use weir::proxy::ProxyConfig;

const CLIENTS: usize = 64;
const SNAPSHOTS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_see_no_failure_while_a_hundred_snapshots_are_published() {
    let (a, b) = tokio::join!(TestBackend::start("a"), TestBackend::start("b"));
    let table_for = |i: usize| {
        // Alternate which backend serves `/`, and add a route that only exists in this table.
        let (name, addr) = if i.is_multiple_of(2) {
            ("a", a.addr)
        } else {
            ("b", b.addr)
        };
        let only_here = format!("/gen-{i}");
        table(&[
            ("swap.example", PathRule::prefix("/"), name, vec![addr]),
            ("swap.example", PathRule::exact(only_here), name, vec![addr]),
        ])
    };
    let proxy = TestProxy::start(ProxyConfig::default(), table_for(0)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let seen_a = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, ok, seen_a, seen_b) = (stop.clone(), ok.clone(), seen_a.clone(), seen_b.clone());
        let addr = proxy.addr;
        clients.push(tokio::spawn(async move {
            let client = http1_client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = match try_get(&client, addr, "swap.example", "/x").await {
                    Ok(answer) if answer.status == 200 => answer,
                    Ok(answer) => {
                        failures.push(format!("{} {}", answer.status, answer.text()));
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(error) => {
                        failures.push(error);
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                };
                ok.fetch_add(1, Ordering::Relaxed);
                match answer.echo().backend() {
                    "a" => seen_a.fetch_add(1, Ordering::Relaxed),
                    _ => seen_b.fetch_add(1, Ordering::Relaxed),
                };
            }
            failures
        }));
    }

    // Publish each new table only after clients have completed requests on the previous one,
    // so every snapshot is really exercised under load. A failing client stops them all.
    for i in 1..=SNAPSHOTS {
        let target = ok.load(Ordering::Relaxed) + CLIENTS;
        wait_until(
            "clients used the current table",
            Duration::from_secs(30),
            || ok.load(Ordering::Relaxed) >= target || stop.load(Ordering::Relaxed),
        )
        .await;
        let generation = proxy.publish(table_for(i));
        assert_eq!(generation, i as u64 + 1);
    }
    let target = ok.load(Ordering::Relaxed) + CLIENTS;
    wait_until(
        "clients used the last table",
        Duration::from_secs(30),
        || ok.load(Ordering::Relaxed) >= target || stop.load(Ordering::Relaxed),
    )
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) >= CLIENTS * (SNAPSHOTS + 1));
    assert!(
        seen_a.load(Ordering::Relaxed) > 0 && seen_b.load(Ordering::Relaxed) > 0,
        "both tables served"
    );

    // The last table is the one serving now: its own exact route answers, an older one's is gone.
    let client = http1_client();
    assert_eq!(
        get(
            &client,
            proxy.addr,
            "swap.example",
            &format!("/gen-{SNAPSHOTS}")
        )
        .await
        .status,
        200
    );
    let old = get(&client, proxy.addr, "swap.example", "/gen-1").await;
    assert_eq!(
        old.echo().backend(),
        "a",
        "an old exact route no longer exists; `/` (table 100 → a) serves it"
    );
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_table_it_started_with() {
    let (old, new) = tokio::join!(TestBackend::start("old"), TestBackend::start("new"));
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[("h", PathRule::prefix("/"), "old", vec![old.addr])]),
    )
    .await;
    let client = http1_client();
    let slow = {
        let client = client.clone();
        let addr = proxy.addr;
        tokio::spawn(async move { get(&client, addr, "h", "/slow?ms=1500").await })
    };
    // Wait until the slow request has reached the old backend, then swap it out of the table.
    wait_until(
        "the slow request reached the old backend",
        Duration::from_secs(10),
        || old.connections.load(Ordering::SeqCst) > 0,
    )
    .await;
    proxy.publish(table(&[(
        "h",
        PathRule::prefix("/"),
        "new",
        vec![new.addr],
    )]));
    assert_eq!(
        get(&client, proxy.addr, "h", "/").await.echo().backend(),
        "new"
    );
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.echo().backend(), "old");
}
