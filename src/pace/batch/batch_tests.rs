use super::*;

fn write(key: &str, value: &str, deadline: Instant) -> Write {
    Write {
        api: Arc::from("group_open_http_svc/modify_group_attr"),
        group: Arc::from("@TGS#aHOT"),
        attrs: vec![(key.to_string(), value.to_string())],
        deadline,
        request_id: format!("{key}={value}"),
        traced: false,
    }
}

fn joined(join: Join) -> Seat {
    match join {
        Join::Joined(seat) => seat,
        other => panic!("expected to join, got {other:?}"),
    }
}

fn merged(members: &[Member]) -> Vec<(String, String)> {
    super::merge::union(members.iter().map(|m| m.attrs.as_slice()))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_deadline_passes_is_refused_and_left_out_of_the_body() {
    let now = Instant::now();
    let later = now + Duration::from_secs(30);
    let (batch, _a) = Batch::open(write("song", "a", later), now);
    let b = joined(batch.join(write("song", "b", now + Duration::from_millis(100)), 64));
    let _c = joined(batch.join(write("host", "c", later), 64));
    let answer = b.answer().await;
    assert_eq!(answer.size, None);
    assert!(matches!(
        answer.result,
        Err(Error::GroupBusy { full: false, .. })
    ));
    assert_eq!(
        merged(&batch.take()),
        pairs(&[("song", "a"), ("host", "c")]),
        "the body is rebuilt without the member that left: its later value no longer wins"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_hangs_up_leaves_and_an_empty_batch_is_abandoned() {
    let now = Instant::now();
    let later = now + Duration::from_secs(30);
    let (batch, a) = Batch::open(write("k", "a", later), now);
    let b = joined(batch.join(write("k", "b", later), 64));
    drop(b);
    assert!(!batch.abandon_if_empty(), "one member is still in");
    drop(a);
    assert!(batch.abandon_if_empty());
    assert!(matches!(
        batch.join(write("k", "c", later), 64),
        Join::NoRoom(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_taken_batch_answers_even_a_member_past_its_deadline() {
    let now = Instant::now();
    let (batch, seat) = Batch::open(write("k", "a", now + Duration::from_millis(10)), now);
    let members = batch.take();
    let waiting = tokio::spawn(seat.answer());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = Reply {
        status: http::StatusCode::OK,
        body: bytes::Bytes::from_static(b"{}"),
        code: Some(0),
    };
    for member in members {
        member.answer(Shared {
            result: Ok(reply.clone()),
            size: Some(1),
            tally: Default::default(),
        });
    }
    let answer = waiting.await.expect("seat");
    assert_eq!(answer.size, Some(1));
    assert!(
        answer.result.is_ok(),
        "sent already: the call's answer, not a 429"
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_or_full_batch_takes_no_more_and_a_late_deadline_is_refused_at_once() {
    let now = Instant::now();
    let later = now + Duration::from_secs(30);
    let (batch, _a) = Batch::open(write("k", "a", later), now + Duration::from_secs(2));
    assert!(matches!(
        batch.join(write("k", "b", now + Duration::from_secs(1)), 64),
        Join::TooLate(_)
    ));
    let _b = joined(batch.join(write("k", "b", later), 2));
    assert!(
        matches!(batch.join(write("k", "c", later), 2), Join::NoRoom(_)),
        "full"
    );
    batch.close();
    assert!(
        matches!(batch.join(write("k", "c", later), 64), Join::NoRoom(_)),
        "closed"
    );
    assert_eq!(batch.take().len(), 2);
}
