use super::*;

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(pairs: &[(&str, &str)]) -> Result<Options> {
    Options::parse(&opts(pairs), no_env)
}

fn err(pairs: &[(&str, &str)]) -> String {
    parse(pairs).unwrap_err().to_string()
}

const BASE: [(&str, &str); 2] = [(REGION, "eu-west-1"), (GROUP, "g")];

#[test]
fn options_take_docker_defaults() {
    let o = parse(&BASE).unwrap();
    assert_eq!(
        o,
        Options {
            region: "eu-west-1".into(),
            group: "g".into(),
            stream: None,
            create_group: false,
            create_stream: true,
            endpoint: Endpoint {
                url: "https://logs.eu-west-1.amazonaws.com/".into(),
                host: "logs.eu-west-1.amazonaws.com".into(),
            },
            flush_interval: Duration::from_secs(5),
            max_buffered_events: 4096,
            multiline: None,
        }
    );
    assert_eq!(
        Endpoint::for_region("cn-north-1").host,
        "logs.cn-north-1.amazonaws.com.cn"
    );
}

#[test]
fn options_parse_every_supported_key() {
    let mut p = BASE.to_vec();
    p.extend([
        (STREAM, "web"),
        (CREATE_GROUP, "true"),
        (CREATE_STREAM, "0"),
        (ENDPOINT, "http://127.0.0.1:4566"),
        (FLUSH_INTERVAL, "2"),
        (MAX_BUFFERED_EVENTS, "10"),
        ("tag", "{{.Name}}"),
    ]);
    let o = parse(&p).unwrap();
    assert_eq!(o.stream.as_deref(), Some("web"));
    assert!(o.create_group);
    assert!(!o.create_stream);
    assert_eq!(
        o.endpoint,
        Endpoint {
            url: "http://127.0.0.1:4566/".into(),
            host: "127.0.0.1:4566".into()
        }
    );
    assert_eq!(o.flush_interval, Duration::from_secs(2));
    assert_eq!(o.max_buffered_events, 10);
    // No scheme means https.
    let e = Endpoint::parse("logs.example.com:8443").unwrap();
    assert_eq!(e.url, "https://logs.example.com:8443/");
}

#[test]
fn region_comes_from_the_environment_when_not_given() {
    let env = |k: &str| (k == "AWS_DEFAULT_REGION").then(|| "ap-south-1".to_string());
    let o = Options::parse(&opts(&[(GROUP, "g")]), env).unwrap();
    assert_eq!(o.region, "ap-south-1");
    let env = |k: &str| match k {
        "AWS_REGION" => Some("us-west-2".to_string()),
        _ => Some("ap-south-1".to_string()),
    };
    let o = Options::parse(&opts(&[(GROUP, "g")]), env).unwrap();
    assert_eq!(o.region, "us-west-2");
    let e = err(&[(GROUP, "g")]);
    assert!(
        e.contains("awslogs-region") && e.contains("required"),
        "{e}"
    );
}

#[test]
fn bad_options_are_refused_by_name() {
    let e = err(&[(REGION, "us-east-1")]);
    assert!(e.contains("awslogs-group") && e.contains("required"), "{e}");
    let with = |k: &'static str, v: &'static str| {
        let mut p = BASE.to_vec();
        p.push((k, v));
        err(&p)
    };
    for (k, v) in [
        (CREATE_GROUP, "yes"),
        (CREATE_STREAM, "maybe"),
        (FLUSH_INTERVAL, "0"),
        (FLUSH_INTERVAL, "-1"),
        (MAX_BUFFERED_EVENTS, "lots"),
        (ENDPOINT, "ftp://x"),
        (ENDPOINT, "http://x/path"),
        (STREAM, "a:b"),
        (REGION, "us-east-1.evil.com/"),
        (MULTILINE_PATTERN, "(unclosed"),
        (DATETIME_FORMAT, "[%Y"),
    ] {
        let e = with(k, v);
        assert!(e.contains(k) && e.contains(v), "{k}={v}: {e}");
    }
    let e = with("awslogs-nope", "1");
    assert_eq!(e, "unknown log opt 'awslogs-nope' for awslogs log driver");
    for k in [CREDENTIALS_ENDPOINT, FORMAT] {
        let e = with(k, "x");
        assert!(e.contains(k) && e.contains("not supported by berth"), "{e}");
    }
    let e = err(&[(REGION, "us-east-1"), (GROUP, "bad group!")]);
    assert!(e.contains("awslogs-group"), "{e}");
}

#[test]
fn multiline_options_build_anchored_patterns() {
    let mut p = BASE.to_vec();
    p.push((DATETIME_FORMAT, "\\[%b %d, %Y %H:%M:%S%L\\]"));
    let o = parse(&p).unwrap();
    let re = regex::Regex::new(o.multiline.as_deref().unwrap()).unwrap();
    assert!(re.is_match("[Nov 28, 2026 01:02:03.456] started"));
    assert!(!re.is_match("  at [Nov 28, 2026 01:02:03.456]"));
    assert!(!re.is_match("[Nov 32, 2026 01:02:03.456]"));
    assert_eq!(
        datetime_regex("%Y-%m-%dT%q"),
        "^\\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T%q"
    );
    let mut p = BASE.to_vec();
    p.push((MULTILINE_PATTERN, "^INFO"));
    assert_eq!(parse(&p).unwrap().multiline.as_deref(), Some("^INFO"));
    p.push((DATETIME_FORMAT, "%Y"));
    let e = parse(&p).unwrap_err().to_string();
    assert!(
        e.contains(DATETIME_FORMAT) && e.contains(MULTILINE_PATTERN),
        "{e}"
    );
}

#[test]
fn multiline_events_gather_the_lines_after_a_match() {
    let re = regex::Regex::new("^\\d").unwrap();
    let batch = [
        msg(1, "\n"),
        msg(2, "  orphan\n"),
        msg(3, "1 first\n"),
        msg(4, "  at a\n"),
        msg(4, "\n"),
        msg(5, "  at b\n"),
        msg(6, "2 second\n"),
    ];
    assert_eq!(
        events(&batch, Some(&re)),
        vec![
            ev(2, "  orphan"),
            ev(3, "1 first\n  at a\n\n  at b"),
            ev(6, "2 second")
        ]
    );
    // An event never grows past the event size: the next line starts another.
    let big = "x".repeat(MAX_EVENT_BYTES - 5);
    let batch = [msg(1, "1 start"), msg(2, &big)];
    let ev = events(&batch, Some(&re));
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].message, big);
}

#[test]
fn validate_checks_the_tag_template() {
    let mut config = LogConfig {
        driver: NAME.into(),
        options: opts(&[(REGION, "us-east-1"), (GROUP, "g"), ("tag", "{{.Nope}}")]),
        ..Default::default()
    };
    assert!(validate(&config).is_err());
    config.options.insert("tag".into(), "{{.ID}}".into());
    validate(&config).unwrap();
}

#[test]
fn stream_is_the_option_else_the_tag_else_the_container_id() {
    let id = "0123456789abcdef0123456789abcdef";
    let mut config = LogConfig {
        driver: NAME.into(),
        name: "/web".into(),
        options: opts(&BASE),
        ..Default::default()
    };
    let o = |c: &LogConfig| Options::parse(&c.options, no_env).unwrap();
    assert_eq!(stream_name(&config, &o(&config), id).unwrap(), id);
    config.options.insert("tag".into(), "app/{{.Name}}".into());
    assert_eq!(stream_name(&config, &o(&config), id).unwrap(), "app/web");
    config.options.insert(STREAM.into(), "fixed".into());
    assert_eq!(stream_name(&config, &o(&config), id).unwrap(), "fixed");
    config.options.remove(STREAM);
    config.options.insert("tag".into(), "a:{{.ID}}".into());
    assert!(stream_name(&config, &o(&config), id).is_err());
}

#[test]
fn credentials_come_from_the_environment() {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
        _ => None,
    };
    let c = credentials_from_env(env).unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.session_token.as_deref()),
        ("AK", None)
    );
    assert!(!format!("{c:?}").contains("SK"));
    let e = credentials_from_env(no_env).unwrap_err().to_string();
    assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
}

fn msg(t_ms: i64, line: &str) -> Message {
    Message {
        stream: crate::logger::STDOUT,
        line: line.as_bytes().to_vec(),
        time_unix_nano: t_ms * 1_000_000 + 999,
    }
}

fn ev(t: i64, m: &str) -> Event {
    Event {
        timestamp_ms: t,
        message: m.into(),
    }
}

#[test]
fn events_strip_newlines_skip_empty_lines_and_sort_stably() {
    let batch = [
        msg(5, "b\n"),
        msg(3, "a\n"),
        msg(4, "\n"),
        msg(5, "c"),
        msg(1, "\r\n"),
    ];
    assert_eq!(
        events(&batch, None),
        vec![ev(1, "\r"), ev(3, "a"), ev(5, "b"), ev(5, "c")]
    );
    // Invalid UTF-8 becomes U+FFFD.
    let bad = Message {
        line: vec![b'x', 0xff, b'\n'],
        ..msg(1, "")
    };
    assert_eq!(events(&[bad], None), vec![ev(1, "x\u{fffd}")]);
}

#[test]
fn long_lines_are_split_at_character_boundaries() {
    let long = "a".repeat(MAX_EVENT_BYTES * 2 + 10) + "\n";
    let ev = events(&[msg(1, &long), msg(2, "next")], None);
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[0].message.len(), MAX_EVENT_BYTES);
    assert_eq!(ev[1].message.len(), MAX_EVENT_BYTES);
    assert_eq!(ev[2].message, "a".repeat(10));
    assert_eq!(ev[3].message, "next");
    // A multi-byte character is never cut.
    let line = "a".repeat(MAX_EVENT_BYTES - 1) + "é" + "z";
    let ev = events(&[msg(1, &line)], None);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].message.len(), MAX_EVENT_BYTES - 1);
    assert_eq!(ev[1].message, "éz");
}

#[test]
fn puts_respect_the_event_count_cap() {
    let ev: Vec<Event> = (0..MAX_PUT_EVENTS as i64 + 5).map(|i| ev(i, "x")).collect();
    let puts = split_puts(ev);
    assert_eq!(
        puts.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![MAX_PUT_EVENTS, 5]
    );
    assert_eq!(puts[1][0].timestamp_ms, MAX_PUT_EVENTS as i64);
}

#[test]
fn puts_respect_the_byte_cap_counting_26_per_event() {
    // Four events of exactly a quarter of the cap fill one request; a fifth byte-less
    // one... cannot be empty, so one byte more spills.
    let quarter = MAX_PUT_BYTES / 4 - PER_EVENT_BYTES;
    let ev4: Vec<Event> = (0..4).map(|i| ev(i, &"q".repeat(quarter))).collect();
    assert_eq!(split_puts(ev4.clone()).len(), 1);
    let mut ev5 = ev4;
    ev5.push(ev(9, "z"));
    let puts = split_puts(ev5);
    assert_eq!(puts.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1]);
    // Without the 26 bytes, these would fit in one request.
    let n = 1000;
    let len = MAX_PUT_BYTES / n - 10;
    let ev: Vec<Event> = (0..n as i64).map(|i| ev(i, &"m".repeat(len))).collect();
    let puts = split_puts(ev);
    assert_eq!(puts.len(), 2);
    for p in &puts {
        assert!(p.iter().map(Event::size).sum::<usize>() <= MAX_PUT_BYTES);
    }
}

#[test]
fn puts_span_less_than_24_hours() {
    let day = MAX_PUT_SPAN_MS;
    let puts = split_puts(vec![
        ev(0, "a"),
        ev(day - 1, "b"),
        ev(day, "c"),
        ev(day + 5, "d"),
        ev(2 * day + 1, "e"),
    ]);
    let msgs: Vec<Vec<&str>> = puts
        .iter()
        .map(|p| p.iter().map(|e| e.message.as_str()).collect())
        .collect();
    assert_eq!(msgs, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
}

#[test]
fn json_errors_name_the_aws_type() {
    let e = api_error(
        http::StatusCode::BAD_REQUEST,
        None,
        json!({"__type": "com.amazonaws.logs#ResourceNotFoundException", "message": "no group"}),
        b"",
    );
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("ResourceNotFoundException", "no group")
    );
    let io = e.into_io("PutLogEvents", "http://x/");
    assert!(io.to_string().contains("ResourceNotFoundException"), "{io}");
    assert!(io.to_string().contains("no group"), "{io}");
    let e = api_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        Some("ThrottlingException:http://internal"),
        Value::Null,
        b"slow down",
    );
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("ThrottlingException", "slow down")
    );
    let e = ApiError {
        kind: "InvalidSequenceTokenException".into(),
        message: "The given sequenceToken is invalid. The next expected sequenceToken is: 4959030200000000001"
            .into(),
        body: Value::Null,
    };
    assert_eq!(expected_token(&e).as_deref(), Some("4959030200000000001"));
}

/// The request `Client::call` signs, cross-checked with botocore's `SigV4Auth` (same
/// body, credentials, date, host `127.0.0.1:4566`, session token).
#[test]
fn put_log_events_signature_matches_botocore() {
    let body = br#"{"logGroupName":"g","logStreamName":"s","logEvents":[{"timestamp":1700000000000,"message":"hello"}]}"#;
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("SESSIONTOKEN".into()),
    };
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("host", "127.0.0.1:4566"),
        ("x-amz-date", "20231114T221320Z"),
        ("x-amz-target", "Logs_20140328.PutLogEvents"),
        ("x-amz-security-token", "SESSIONTOKEN"),
    ];
    let req = sigv4::Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        payload: body,
    };
    assert_eq!(
        sigv4::authorization(&req, &creds, "us-east-1", "logs", "20231114T221320Z"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/logs/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
         Signature=f0822ada202dea9301bc6e5a977ea60e943299ace38f5607c3a058d5028553c4"
    );
}

/// A moto server on a free loopback port, killed by PID on drop; `None` when moto is not
/// installed (the integration tests require it).
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let moto = Moto { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(moto);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_creds() -> Credentials {
    Credentials {
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        session_token: Some("tok".into()),
    }
}

fn sink_for(port: u16, group: &str, create_group: bool) -> AwsLogsSink {
    let mut pairs = vec![
        (REGION, "us-east-1".to_string()),
        (GROUP, group.to_string()),
        (ENDPOINT, format!("http://127.0.0.1:{port}")),
    ];
    if create_group {
        pairs.push((CREATE_GROUP, "true".into()));
    }
    let o = Options::parse(
        &pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        no_env,
    )
    .unwrap();
    AwsLogsSink::new(o, test_creds(), "s1".into()).unwrap()
}

async fn get_events(sink: &AwsLogsSink) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({
            "logGroupName": sink.group,
            "logStreamName": sink.stream,
            "startFromHead": true,
        });
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let answer = sink.client.call("GetLogEvents", &req).await.unwrap();
        let page = answer["events"].as_array().unwrap();
        out.extend(page.iter().map(|e| {
            (
                e["timestamp"].as_i64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            )
        }));
        let next = answer["nextForwardToken"].as_str().map(str::to_string);
        if page.is_empty() || next.is_none() || next == token {
            return out;
        }
        token = next;
    }
}

#[tokio::test]
async fn sink_delivers_to_moto() {
    let Some(moto) = Moto::start() else {
        eprintln!("moto_server not installed: skipping");
        return;
    };
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Without create-group the missing group is an error naming the AWS type.
    let mut sink = sink_for(moto.port, "awslogs-unit", false);
    let e = sink.send(&[msg(now, "x\n")]).await.unwrap_err();
    assert!(e.to_string().contains("ResourceNotFoundException"), "{e}");

    let mut sink = sink_for(moto.port, "awslogs-unit", true);
    let batch = [
        msg(now + 1, "second\n"),
        msg(now, "first\n"),
        msg(now, "\n"),
    ];
    sink.send(&batch).await.unwrap();
    // Creating again (existing group and stream) is fine; a big batch spans requests.
    let mut again = sink_for(moto.port, "awslogs-unit", true);
    let many: Vec<Message> = (0..MAX_PUT_EVENTS as i64 + 3)
        .map(|i| msg(now + 2 + i / 1000, &format!("m{i}\n")))
        .collect();
    again.send(&many).await.unwrap();
    let got = get_events(&sink).await;
    assert_eq!(got[0], (now, "first".to_string()));
    assert_eq!(got[1], (now + 1, "second".to_string()));
    assert_eq!(got.len(), 2 + many.len(), "{:?}", &got[..3]);
    assert_eq!(got.last().unwrap().1, format!("m{}", MAX_PUT_EVENTS + 2));
}

#[tokio::test]
async fn sink_reports_an_unreachable_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = sink_for(port, "g", true);
    let e = sink.send(&[msg(1, "x\n")]).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach"), "{e}");
}

#[tokio::test]
async fn https_client_builds_for_the_default_endpoint() {
    let o = parse(&BASE).unwrap();
    assert!(o.endpoint.url.starts_with("https://"));
    let sink = AwsLogsSink::new(o, test_creds(), "s".into()).unwrap();
    assert_eq!(sink.stream(), "s");
    assert_eq!(
        sink.batch_limits(),
        BatchLimits {
            max_lines: MAX_PUT_EVENTS,
            max_bytes: MAX_PUT_BYTES,
            linger: Duration::from_secs(5),
        }
    );
}
