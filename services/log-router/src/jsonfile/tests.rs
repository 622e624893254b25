//! Tests of the json-file driver: the line format, rotation and compression, reading back.
use super::{codec::*, compress::*, reader::*, *};
use crate::logger::{STDERR, STDOUT};
use flate2::read::MultiGzDecoder;
use std::{io::Read, time::UNIX_EPOCH};

mod unit {
    use super::*;

    fn msg(line: &[u8], stream: u8, t: i64) -> Message {
        Message {
            stream,
            line: line.to_vec(),
            time_unix_nano: t,
        }
    }

    fn encoded(line: &[u8]) -> String {
        let mut out = Vec::new();
        encode_line(&mut out, &msg(line, STDOUT, 1_795_810_500_123_456_789));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn line_format_is_dockers() {
        assert_eq!(
            encoded(b"hi\n"),
            "{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T20:15:00.123456789Z\"}\n"
        );
        let mut out = Vec::new();
        encode_line(&mut out, &msg(b"x", STDERR, 5));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"x\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:00.000000005Z\"}\n"
        );
    }

    #[test]
    fn escaping_matches_docker() {
        let line = encoded(b"a\"b\\c\r\t\x01\x1f<>&\xe2\x80\xa8\n");
        assert!(
            line.starts_with(r#"{"log":"a\"b\\c\r\u0009\u0001\u001f\u003c\u003e\u0026\u2028\n","#),
            "{line}"
        );
        // Each invalid byte becomes one U+FFFD, as Go's decoder yields one per byte.
        let line = encoded(b"\xff\xe2\x82a\xc3\xa9");
        assert!(
            line.starts_with(r#"{"log":"\ufffd\ufffd\ufffdaé","#),
            "{line}"
        );
    }

    #[test]
    fn lines_round_trip() {
        for line in [
            &b"hi\n"[..],
            b"",
            b"\"quoted\" <x> & \x07\r\n",
            "héllo ☃\n".as_bytes(),
        ] {
            let m = msg(line, STDERR, 1_700_000_000_000_000_001);
            let mut out = Vec::new();
            encode_line(&mut out, &m);
            assert_eq!(decode_line(&out[..out.len() - 1]), Some(m));
        }
        let mut out = Vec::new();
        encode_line(&mut out, &msg(b"\xffa", STDOUT, 0));
        assert_eq!(
            decode_line(&out[..out.len() - 1]).unwrap().line,
            "\u{fffd}a".as_bytes()
        );
    }

    #[test]
    fn options_are_validated_with_dockers_text() {
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Options::parse(&opts(&[("x", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown log opt 'x' for json-file log driver"
        );
        let o = Options::parse(&opts(&[
            ("max-size", "10m"),
            ("max-file", "3"),
            ("tag", "t"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                max_size: Some(10 << 20),
                max_file: 3,
                compress: false,
            }
        );
        assert!(Options::parse(&opts(&[("max-file", "3")])).is_err());
        assert!(Options::parse(&opts(&[("max-size", "ten")])).is_err());
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("100"), Some(100));
    }

    fn write_lines(logger: &mut JsonFileLogger, range: std::ops::Range<i64>) {
        for i in range {
            logger
                .log(&msg(format!("line {i}\n").as_bytes(), STDOUT, i))
                .unwrap();
            if logger.wants_rotation() {
                logger.rotate().unwrap();
            }
        }
        logger.flush().unwrap();
    }

    fn texts(msgs: &[Message]) -> Vec<String> {
        msgs.iter()
            .map(|m| String::from_utf8(m.line.clone()).unwrap())
            .collect()
    }

    #[test]
    fn tail_reads_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options {
            max_size: None,
            max_file: 1,
            compress: false,
        };
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        // Enough lines to span several 64 KiB chunks.
        write_lines(&mut logger, 0..5000);
        let reader = logger.reader().unwrap();
        let (m, _) = reader.read_existing(Some(3)).unwrap();
        assert_eq!(texts(&m), ["line 4997\n", "line 4998\n", "line 4999\n"]);
        let (m, _) = reader.read_existing(Some(2500)).unwrap();
        assert_eq!(m.len(), 2500);
        assert_eq!(m[0].time_unix_nano, 2500);
        let (m, _) = reader.read_existing(Some(10_000)).unwrap();
        assert_eq!(m.len(), 5000);
        let (m, _) = reader.read_existing(Some(0)).unwrap();
        assert!(m.is_empty());
        let (m, _) = reader.read_existing(None).unwrap();
        assert_eq!(m.len(), 5000);
        // A partial line being written is not returned, and a cursor picks it up later.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"log\":\"par")
            .unwrap();
        let (m, mut cursor) = reader.read_existing(Some(1)).unwrap();
        assert_eq!(texts(&m), ["line 4999\n"]);
        assert!(reader.read_new(&mut cursor).unwrap().is_empty());
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"tial\\n\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:01Z\"}\n")
            .unwrap();
        let m = reader.read_new(&mut cursor).unwrap();
        assert_eq!(texts(&m), ["partial\n"]);
        assert_eq!(m[0].stream, STDERR);
        assert_eq!(m[0].time_unix_nano, 1_000_000_000);
    }

    #[test]
    fn rotation_keeps_max_file_files_and_readers_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options {
            max_size: Some(1000),
            max_file: 3,
            compress: false,
        };
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        let reader = logger.reader().unwrap();
        let (_, mut cursor) = reader.read_existing(None).unwrap();
        write_lines(&mut logger, 0..100);
        assert!(JsonFileLogger::rotated(&path, 2).exists());
        assert!(!JsonFileLogger::rotated(&path, 3).exists());
        // The follower had the first file open: it reads on through the rotations it
        // can still reach (files deleted meanwhile are gone, as with Docker).
        let followed = reader.read_new(&mut cursor).unwrap();
        assert!(!followed.is_empty());
        let (all, _) = reader.read_existing(None).unwrap();
        let n = all.len();
        assert!(n < 100 && n > 20, "{n}");
        assert_eq!(all.last().unwrap().time_unix_nano, 99);
        assert_eq!(all[0].time_unix_nano, 100 - n as i64);
        let (tail, _) = reader.read_existing(Some(n - 1)).unwrap();
        assert_eq!(tail, all[1..]);
    }
}

mod bench {
    use super::*;
    use std::time::Instant;

    /// `cargo test --release -p berth-log-router -- --ignored bench`
    #[test]
    #[ignore]
    fn bench_read_1m_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options::parse(&BTreeMap::new()).unwrap();
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        let t = Instant::now();
        for i in 0..1_000_000i64 {
            let m = Message {
                stream: STDOUT,
                line: format!("line {i}\n").into_bytes(),
                time_unix_nano: 1_795_810_500_000_000_000 + i * 1000,
            };
            logger.log(&m).unwrap();
        }
        logger.flush().unwrap();
        eprintln!("write 1M: {:?}", t.elapsed());
        let reader = logger.reader().unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let (m, _) = reader.read_existing(None).unwrap();
            assert_eq!(m.len(), 1_000_000);
            eprintln!("read_existing(None): {:?}", t.elapsed());
        }
        let t = Instant::now();
        let direct = JsonFileReader {
            path: path.clone(),
            max_file: 1,
        };
        let (m, _) = direct
            .read_existing_since(None, 1_795_810_500_000_000_000 + 900_000 * 1000)
            .unwrap();
        assert_eq!(m.len(), 100_000);
        eprintln!("read_existing_since(None, last 10%): {:?}", t.elapsed());
        for _ in 0..3 {
            let t = Instant::now();
            let (m, _) = reader.read_existing(Some(10)).unwrap();
            assert_eq!(m.len(), 10);
            eprintln!("read_existing(Some(10)): {:?}", t.elapsed());
        }
    }

    /// Through the router: written by `write_batch`, read by `read_logs` (what the gRPC
    /// service streams from), to see what the router adds to the reader.
    #[test]
    #[ignore]
    fn bench_router_read_1m_lines() {
        use crate::router::{ReadRequest, Router};
        let dir = tempfile::tempdir().unwrap();
        let router = Router::open(dir.path()).unwrap();
        let log = router.ingest_log("c").unwrap();
        let records: Vec<berth_wire::LogRecord> = (0..1_000_000u64)
            .map(|i| berth_wire::LogRecord {
                seq: i,
                time_unix_nano: 1_795_810_500_000_000_000 + i as i64 * 1000,
                stream: STDOUT,
                line: format!("line {i}\n").into_bytes(),
            })
            .collect();
        let t = Instant::now();
        for batch in records.chunks(1000) {
            log.write_batch(batch).unwrap();
        }
        eprintln!("router write 1M: {:?}", t.elapsed());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for tail in [None, Some(10)] {
            let t = Instant::now();
            let n = rt.block_on(async {
                let mut rx = router
                    .read_logs(
                        "c",
                        ReadRequest {
                            tail,
                            ..ReadRequest::default()
                        },
                    )
                    .unwrap();
                let mut n = 0;
                while let Some(m) = rx.recv().await {
                    m.unwrap();
                    n += 1;
                }
                n
            });
            eprintln!(
                "router read_logs(tail {tail:?}): {n} lines in {:?}",
                t.elapsed()
            );
        }
    }

    /// The same lines rotated at 10 MB into compressed files.
    #[test]
    #[ignore]
    fn bench_read_1m_lines_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options {
            max_size: Some(10 << 20),
            max_file: 20,
            compress: true,
        };
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        let t = Instant::now();
        let mut worst = std::time::Duration::ZERO;
        for i in 0..1_000_000i64 {
            let m = Message {
                stream: STDOUT,
                line: format!("line {i}\n").into_bytes(),
                time_unix_nano: 1_795_810_500_000_000_000 + i * 1000,
            };
            if logger.wants_rotation() {
                let r = Instant::now();
                logger.rotate().unwrap();
                worst = worst.max(r.elapsed());
            }
            logger.log(&m).unwrap();
        }
        logger.flush().unwrap();
        eprintln!(
            "write 1M with rotation: {:?}, slowest rotate {worst:?}",
            t.elapsed()
        );
        wait_compression(&path);
        let reader = logger.reader().unwrap();
        for _ in 0..2 {
            let t = Instant::now();
            let (m, _) = reader.read_existing(None).unwrap();
            assert_eq!(m.len(), 1_000_000);
            eprintln!("read_existing(None) over .gz: {:?}", t.elapsed());
        }
        let t = Instant::now();
        let (m, _) = reader.read_existing(Some(10)).unwrap();
        assert_eq!(m.len(), 10);
        eprintln!("read_existing(Some(10)): {:?}", t.elapsed());
    }
}

mod more_tests {
    use super::*;
    use std::time::Duration;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn msg(line: &str, t: i64) -> Message {
        Message {
            stream: STDOUT,
            line: line.as_bytes().to_vec(),
            time_unix_nano: t,
        }
    }

    fn write_lines(logger: &mut JsonFileLogger, range: std::ops::Range<i64>) {
        for i in range {
            logger.log(&msg(&format!("line {i}\n"), i)).unwrap();
            if logger.wants_rotation() {
                logger.rotate().unwrap();
            }
        }
        logger.flush().unwrap();
    }

    fn times(msgs: &[Message]) -> Vec<i64> {
        msgs.iter().map(|m| m.time_unix_nano).collect()
    }

    #[test]
    fn word_at_a_time_search_matches_a_plain_one() {
        let specials = b"ab\"\\\x01\x1f\x7f\xff\n <";
        for gap in [1u32, 5, 17] {
            let hay: Vec<u8> = (0..300u32)
                .map(|i| {
                    if i % gap == 0 {
                        specials[(i * 7 % 13 % 11) as usize]
                    } else {
                        b'x'
                    }
                })
                .collect();
            for start in 0..hay.len() {
                for end in start..(start + 40).min(hay.len()) {
                    let h = &hay[start..end];
                    assert_eq!(find_byte(h, b'\n'), h.iter().position(|&b| b == b'\n'));
                    assert_eq!(
                        find_special(h),
                        h.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    );
                }
            }
        }
        let plain = [b'x'; 40];
        assert_eq!(find_byte(&plain, b'\n'), None);
        assert_eq!(find_special(&plain), None);
    }

    #[test]
    fn since_skips_older_lines_and_files() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            let o = Options {
                max_size: Some(1000),
                max_file: 5,
                compress,
            };
            let mut logger = JsonFileLogger::open(path.clone(), o).unwrap();
            write_lines(&mut logger, 1..80);
            let reader = JsonFileReader {
                path: path.clone(),
                max_file: 5,
            };
            let (all, _) = reader.read_existing(None).unwrap();
            wait_compression(&path);
            for n in 1..5 {
                let rotated = Rotated::open(&path, n).unwrap().unwrap();
                assert_eq!(matches!(rotated, Rotated::Gzip(_)), compress);
                let mut lines = Vec::new();
                let mut text = Vec::new();
                Rotated::open(&path, n)
                    .unwrap()
                    .unwrap()
                    .into_reader()
                    .read_to_end(&mut text)
                    .unwrap();
                tail_lines_in(&text, 1, &mut lines);
                let last = decode_line(&lines[0]).unwrap().time_unix_nano;
                assert!(!rotated.ends_before(last).unwrap());
                assert!(rotated.ends_before(last + 1).unwrap());
                // The check leaves the file at its start.
                let mut again = Vec::new();
                rotated.into_reader().read_to_end(&mut again).unwrap();
                assert_eq!(again, text);
            }
            for since in [0, 1, 2, 30, 60, 79, 80, 1000] {
                let want: Vec<Message> = all
                    .iter()
                    .filter(|m| m.time_unix_nano >= since)
                    .cloned()
                    .collect();
                let (got, cursor) = reader.read_existing_since(None, since).unwrap();
                assert_eq!(got, want, "since {since}");
                assert_eq!(cursor.pos, fs::metadata(&path).unwrap().len());
                let (got, _) = reader.read_existing_since(Some(10), since).unwrap();
                assert_eq!(got, want[want.len().saturating_sub(10)..]);
            }
        }
        let mut line = Vec::new();
        encode_line(&mut line, &msg("x\",\"time\":\"1\n", 77));
        assert_eq!(line_time(&line[..line.len() - 1]), Some(77));
        assert_eq!(
            line_time(br#"{"time":"2024-01-02T03:04:05Z","log":"a"}"#),
            None
        );
    }

    #[test]
    fn router_restarts_keep_every_line_with_compression() {
        use crate::router::{ReadRequest, Router};
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            driver: NAME.to_string(),
            options: opts(&[
                ("max-size", "2k"),
                ("max-file", "100"),
                ("compress", "true"),
            ]),
            ..LogConfig::default()
        };
        let record = |i: u64| berth_wire::LogRecord {
            seq: i,
            time_unix_nano: i as i64,
            stream: STDOUT,
            line: format!("line {i}\n").into_bytes(),
        };
        for round in 0..3u64 {
            let router = Router::open(dir.path()).unwrap();
            router.open_log("c", config.clone()).unwrap();
            let log = router.get("c").unwrap();
            assert_eq!(log.next_seq(), round * 300);
            let records: Vec<_> = (round * 300..round * 300 + 300).map(record).collect();
            // Resends of the previous round are skipped.
            let from = (round * 300).saturating_sub(5);
            let resent: Vec<_> = (from..round * 300).map(record).collect();
            log.write_batch(&resent).unwrap();
            for batch in records.chunks(7) {
                log.write_batch(batch).unwrap();
            }
        }
        let router = Router::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut rx = router.read_logs("c", ReadRequest::default()).unwrap();
            let mut got = Vec::new();
            while let Some(m) = rx.recv().await {
                got.push(m.unwrap().time_unix_nano);
            }
            got
        });
        assert_eq!(got, (0..900).collect::<Vec<i64>>());
        let gz = fs::read_dir(dir.path().join("containers").join("c"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".gz")
            })
            .count();
        assert!(gz > 10, "{gz}");
    }

    #[test]
    fn compress_needs_rotation_as_docker_says() {
        let e = Options::parse(&opts(&[("compress", "true")])).unwrap_err();
        assert_eq!(e.to_string(), COMPRESS_NEEDS_MAX_FILE);
        let e = Options::parse(&opts(&[("compress", "true"), ("max-size", "1m")])).unwrap_err();
        assert_eq!(e.to_string(), COMPRESS_NEEDS_MAX_FILE);
        assert!(Options::parse(&opts(&[("compress", "yes")])).is_err());
        let o = Options::parse(&opts(&[
            ("compress", "True"),
            ("max-size", "1m"),
            ("max-file", "2"),
        ]))
        .unwrap();
        assert!(o.compress);
        let o = Options::parse(&opts(&[("compress", "false")])).unwrap();
        assert!(!o.compress);
    }

    #[test]
    fn time_format_matches_humantime_both_ways() {
        for t in [
            0i64,
            5,
            1_795_810_500_123_456_789,
            951_782_400_000_000_000, // 2000-02-29
            4_107_542_399_999_999_999,
            1_709_251_199_000_000_001,
        ] {
            let s = format_time(t);
            let want = humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(t as u64))
                .to_string();
            assert_eq!(s, want);
            assert_eq!(parse_time_fast(s.as_bytes()), Some(t), "{s}");
        }
        assert_eq!(
            parse_time_fast(b"2024-01-02T03:04:05.5Z"),
            parse_time("2024-01-02T03:04:05.500000000Z")
        );
        assert_eq!(
            parse_time_fast(b"2024-01-02T03:04:05Z"),
            Some(1_704_164_645_000_000_000)
        );
        assert_eq!(
            parse_time_fast(b"2024-01-02T03:04:05.25-01:30"),
            Some(1_704_170_045_250_000_000)
        );
        assert_eq!(parse_time_fast(b"2024-13-02T03:04:05Z"), None);
        assert_eq!(
            parse_time("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645_000_000_000)
        );
    }

    #[test]
    fn fast_decoder_agrees_with_serde() {
        let lines: &[&[u8]] = &[
            b"hi\n",
            b"",
            b"\"q\" \\ <a> & \x01\x1f\t\r\n",
            "h\u{e9}llo \u{2603} \u{1f600} \u{2028}\u{2029}\n".as_bytes(),
            b"\xff\xfe bad",
        ];
        for (i, &line) in lines.iter().enumerate() {
            for attrs in [BTreeMap::new(), opts(&[("a\"b", "c\\d\t<"), ("k", "")])] {
                let m = Message {
                    stream: if i % 2 == 0 { STDOUT } else { STDERR },
                    line: line.to_vec(),
                    time_unix_nano: 1_700_000_000_000_000_000 + i as i64,
                };
                let mut out = Vec::new();
                encode_line_with_attrs(&mut out, &m, &encode_attrs(&attrs));
                let raw = &out[..out.len() - 1];
                let fast = decode_fast(raw).expect("fast path");
                let l: JsonLine = serde_json::from_slice(raw).unwrap();
                assert_eq!(fast.line, l.log.as_bytes());
                assert_eq!(fast.time_unix_nano, parse_time(&l.time).unwrap());
                assert_eq!(fast.stream, m.stream);
                // Valid JSON with attrs as a map of the values given.
                let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
                if !attrs.is_empty() {
                    let got: BTreeMap<String, String> =
                        serde_json::from_value(v["attrs"].clone()).unwrap();
                    assert_eq!(got, attrs);
                }
            }
        }
        // Other shapes go to serde: other key order, escaped slash, surrogate pairs,
        // Go's trimmed fractions, offsets, no log field.
        let other: &[(&str, &str, i64)] = &[
            (
                r#"{"time":"2024-01-02T03:04:05Z","stream":"stderr","log":"x\/y"}"#,
                "x/y",
                1_704_164_645_000_000_000,
            ),
            (
                r#"{"log":"\ud83d\ude00\u00e9","stream":"stdout","time":"2024-01-02T03:04:05.1Z"}"#,
                "\u{1f600}\u{e9}",
                1_704_164_645_100_000_000,
            ),
            (
                r#"{"log":"a","stream":"stdout","time":"2024-01-02T04:04:05+01:00"}"#,
                "a",
                1_704_164_645_000_000_000,
            ),
            (
                r#"{"stream":"stdout","time":"2024-01-02T03:04:05Z"}"#,
                "",
                1_704_164_645_000_000_000,
            ),
        ];
        for (raw, text, t) in other {
            let m = decode_line(raw.as_bytes()).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!((m.line.as_slice(), m.time_unix_nano), (text.as_bytes(), *t));
        }
        assert_eq!(decode_line(b"{\"log\":\"unterminated"), None);
        assert_eq!(decode_line(b"garbage"), None);
    }

    #[test]
    fn attrs_are_written_as_docker_does() {
        let m = Message {
            stream: STDOUT,
            line: b"hi\n".to_vec(),
            time_unix_nano: 1_795_810_500_123_456_789,
        };
        let mut out = Vec::new();
        encode_line_with_attrs(
            &mut out,
            &m,
            &encode_attrs(&opts(&[("b", "2"), ("a", "<1>")])),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"attrs\":{\"a\":\"\\u003c1\\u003e\",\"b\":\"2\"},\"time\":\"2026-11-27T20:15:00.123456789Z\"}\n"
        );
        assert!(encode_attrs(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn open_for_resolves_attrs_and_the_reader_ignores_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig {
            options: opts(&[("labels", "team"), ("env", "MODE")]),
            labels: opts(&[("team", "web"), ("other", "x")]),
            env: vec!["MODE=prod".to_string()],
            ..LogConfig::default()
        };
        let mut logger = open_for(&config, path.clone()).unwrap();
        write_lines(&mut logger, 0..3);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.lines()
                .all(|l| l.contains(r#","attrs":{"MODE":"prod","team":"web"},"time":"#)),
            "{text}"
        );
        let (m, _) = logger.reader().unwrap().read_existing(None).unwrap();
        assert_eq!(m[2], msg("line 2\n", 2));
        let bad = LogConfig {
            options: opts(&[("env-regex", "(")]),
            ..LogConfig::default()
        };
        let e = open_for(&bad, path.clone()).err().unwrap().to_string();
        assert!(e.contains("env-regex"), "{e}");
        assert!(validate(&bad).is_err());
        assert!(validate(&config).is_ok());
    }

    fn compressed_logger(path: &Path, max_file: u32) -> JsonFileLogger {
        let o = Options {
            max_size: Some(1000),
            max_file,
            compress: true,
        };
        JsonFileLogger::open(path.to_path_buf(), o).unwrap()
    }

    #[test]
    fn compressed_rotation_reads_follows_and_counts_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut logger = compressed_logger(&path, 4);
        let reader = logger.reader().unwrap();
        let (_, mut cursor) = reader.read_existing(None).unwrap();
        // About 17 lines a file: one rotation, then follow it.
        write_lines(&mut logger, 0..20);
        let followed = reader.read_new(&mut cursor).unwrap();
        assert_eq!(times(&followed), (0..20).collect::<Vec<_>>());
        write_lines(&mut logger, 20..100);
        let followed = reader.read_new(&mut cursor).unwrap();
        assert_eq!(followed.last().unwrap().time_unix_nano, 99);
        wait_compression(&path);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "c-json.log",
                "c-json.log.1.gz",
                "c-json.log.2.gz",
                "c-json.log.3.gz"
            ]
        );
        // The current file stays plain.
        assert!(fs::read(&path).unwrap().starts_with(b"{\"log\""));
        let (all, _) = reader.read_existing(None).unwrap();
        let n = all.len();
        assert!(n > 40 && n < 100, "{n}");
        assert_eq!(times(&all), (100 - n as i64..100).collect::<Vec<_>>());
        for k in [1, 5, 30, n - 1, n, n + 5] {
            let (tail, _) = reader.read_existing(Some(k)).unwrap();
            assert_eq!(tail, all[n.saturating_sub(k)..], "tail {k}");
        }
        // Mid-compression a reader finds the plain file: reads are the same.
        let gz = JsonFileLogger::rotated_gz(&path, 2);
        let mut plain = Vec::new();
        MultiGzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        fs::write(JsonFileLogger::rotated(&path, 2), plain).unwrap();
        fs::remove_file(&gz).unwrap();
        let (again, _) = reader.read_existing(None).unwrap();
        assert_eq!(again, all);
    }

    #[test]
    fn crash_leftovers_are_compressed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        {
            let o = Options {
                max_size: Some(1000),
                max_file: 3,
                compress: false,
            };
            let mut logger = JsonFileLogger::open(path.clone(), o).unwrap();
            write_lines(&mut logger, 0..45);
        }
        let (before, _) = JsonFileReader {
            path: path.clone(),
            max_file: 3,
        }
        .read_existing(None)
        .unwrap();
        // Plain `.1` and `.2`; a stale temporary from a crash; `.2` already compressed
        // but not yet removed.
        fs::write(
            with_suffix(&JsonFileLogger::rotated(&path, 1), ".gz.tmp"),
            b"junk",
        )
        .unwrap();
        compress_file(&JsonFileLogger::rotated(&path, 2)).unwrap();
        fs::write(
            JsonFileLogger::rotated(&path, 2),
            fs::read(&path).unwrap(), // wrong content: must not be read
        )
        .unwrap();
        let mut logger = compressed_logger(&path, 3);
        wait_compression(&path);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]);
        let reader = logger.reader().unwrap();
        let (after, _) = reader.read_existing(None).unwrap();
        assert_eq!(after, before);
        write_lines(&mut logger, 45..60);
        let (after, _) = reader.read_existing(None).unwrap();
        assert_eq!(after.last().unwrap().time_unix_nano, 59);
    }

    #[test]
    fn max_file_two_with_compression_keeps_one_gz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut logger = compressed_logger(&path, 2);
        write_lines(&mut logger, 0..200);
        wait_compression(&path);
        assert!(JsonFileLogger::rotated_gz(&path, 1).exists());
        assert!(!JsonFileLogger::rotated(&path, 1).exists());
        assert!(!JsonFileLogger::rotated_gz(&path, 2).exists());
        let (all, _) = logger.reader().unwrap().read_existing(None).unwrap();
        assert_eq!(all.last().unwrap().time_unix_nano, 199);
        let first = all[0].time_unix_nano;
        assert_eq!(times(&all), (first..200).collect::<Vec<_>>());
    }
}
