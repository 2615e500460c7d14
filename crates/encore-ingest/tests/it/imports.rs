use encore_ingest::import::{hetrec_lastfm, movielens};
use encore_ingest::matrix::{MatrixOptions, build_matrix};
use encore_ingest::spotify::spotify_history;
use encore_ingest::{IngestOptions, Ingestor, Table};
use std::path::PathBuf;

/// `../shared/datasets/<name>` beside the repository, or `None` (with a note) when absent.
fn dataset(name: &str) -> Option<PathBuf> {
    encore_core::shared::path(env!("CARGO_MANIFEST_DIR"), &format!("datasets/{name}"))
}

#[test]
fn hetrec_lastfm_import_reports_the_published_counts() {
    let Some(dir) = dataset("hetrec2011-lastfm-2k") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::open(tmp.path(), IngestOptions::default()).unwrap();
    let r = hetrec_lastfm(&ingestor, &dir).unwrap();
    assert_eq!(r.users, 1_892);
    assert_eq!(r.catalog.artists, 17_632);
    assert_eq!(r.rows, 92_834);
    assert_eq!(r.catalog.tags, 11_946);
    assert_eq!(r.catalog.tag_assignments, 186_479);
    assert_eq!(
        (r.ingest.accepted, r.ingest.rejected),
        (92_834, 0),
        "{:?}",
        r.ingest.first_rejects
    );

    // Latin-1 tags are decoded, not mangled
    let tags =
        std::fs::read_to_string(tmp.path().join("catalog/hetrec-lastfm/tags.jsonl")).unwrap();
    assert!(tags.contains("rock fran\u{e7}ais"), "tags.dat is Latin-1");

    // play counts become a CSR matrix with the counts as weights
    let m = build_matrix(&ingestor, MatrixOptions::default()).unwrap();
    assert_eq!(m.users.len(), 1_892);
    assert_eq!(m.nnz(), 92_834);
    let u = m.users.iter().position(|u| u == "lfm-u2").unwrap();
    let a = m.items.iter().position(|i| i == "lfm-ar51").unwrap() as u32;
    assert_eq!(
        m.row(u).find(|(i, _)| *i == a).map(|(_, p)| p),
        Some(13_883)
    );

    // importing again stores nothing new
    let again = hetrec_lastfm(&ingestor, &dir).unwrap();
    assert_eq!(
        (again.ingest.accepted, again.ingest.duplicates),
        (0, 92_834)
    );
}

#[test]
fn movielens_import_reports_the_published_counts() {
    let Some(dir) = dataset("movielens-100k") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::open(tmp.path(), IngestOptions::default()).unwrap();
    let r = movielens(&ingestor, &dir).unwrap();
    assert_eq!(r.rows, 100_000);
    assert_eq!(r.users, 943);
    assert_eq!(r.catalog.items, 1_682);
    assert_eq!(
        (r.ingest.accepted, r.ingest.rejected, r.ingest.unknown_items),
        (100_000, 0, 0)
    );
    let items = std::fs::read_to_string(tmp.path().join("catalog/movielens/items.jsonl")).unwrap();
    assert!(items.contains("Mis\u{e9}rables"), "u.item is Latin-1");
    ingestor.log(Table::Interaction).seal().unwrap();
    assert_eq!(
        ingestor.log(Table::Interaction).stats().sealed_rows,
        100_000
    );

    // ratings from 1997-98 are caught as duplicates after a restart: the index pages in the
    // days the batch touches, whatever their age
    drop(ingestor);
    let ingestor = Ingestor::open(tmp.path(), IngestOptions::default()).unwrap();
    let again = movielens(&ingestor, &dir).unwrap();
    assert_eq!(
        (again.ingest.accepted, again.ingest.duplicates),
        (0, 100_000)
    );
}

/// A realistic export: the extended history beside the account-data music and podcast files
/// (the same plays in both shapes), an audiobook chapter, skips by button and by flag, nulls,
/// an incognito play, a row listed twice, and rows that name nothing or have no time.
#[test]
fn a_spotify_export_imports_once_with_names_skips_and_every_drop_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let extended = tmp.path().join("Streaming_History_Audio_2023.json");
    let teardrop = r#"{"ts":"2023-02-01T08:00:12Z","platform":"Android OS 13","ms_played":201000,"conn_country":"SE",
         "ip_addr":"192.0.2.1","master_metadata_track_name":"Teardrop","master_metadata_album_artist_name":"Massive Attack",
         "master_metadata_album_album_name":"Mezzanine","spotify_track_uri":"spotify:track:67Hna13dNDkZvBpTXRIaOJ",
         "episode_name":null,"episode_show_name":null,"spotify_episode_uri":null,
         "reason_start":"clickrow","reason_end":"trackdone","shuffle":false,"skipped":null,"offline":false,"incognito_mode":false}"#;
    let rows = [
        teardrop.to_owned(),
        r#"{"ts":"2023-02-01T08:01:02Z","platform":"Android OS 13","ms_played":9000,"conn_country":"SE",
           "master_metadata_track_name":"Angel","master_metadata_album_artist_name":"Massive Attack",
           "master_metadata_album_album_name":"Mezzanine","spotify_track_uri":"spotify:track:7uv632EkfwYhXoqf8rhYrg",
           "reason_start":"trackdone","reason_end":"fwdbtn","shuffle":true,"skipped":true,"offline":false,"incognito_mode":false}"#.into(),
        r#"{"ts":"2023-02-01T08:02:40Z","platform":"iOS 16.1 (iPhone14,2)","ms_played":45000,"conn_country":"DE",
           "master_metadata_track_name":"Hang With Me","master_metadata_album_artist_name":"Robyn",
           "master_metadata_album_album_name":"Body Talk","spotify_track_uri":"spotify:track:3kcDcQ5VNHAMmpjMUjQdXl",
           "reason_start":"fwdbtn","reason_end":"endplay","skipped":true,"offline":true,"incognito_mode":false}"#.into(),
        r#"{"ts":"2023-02-01T08:30:00Z","platform":"web_player","ms_played":600000,"conn_country":"SE",
           "master_metadata_track_name":null,"master_metadata_album_artist_name":null,"spotify_track_uri":null,
           "episode_name":"Ep 1","episode_show_name":"The Daily","spotify_episode_uri":"spotify:episode:0Q86acNRm6V9GYx55SXKwf",
           "reason_start":"clickrow","reason_end":"trackdone","skipped":null,"incognito_mode":true}"#.into(),
        r#"{"ts":"2023-02-01T09:00:00Z","ms_played":1000,"master_metadata_track_name":null,
           "master_metadata_album_artist_name":null,"spotify_track_uri":null,"spotify_episode_uri":null,
           "reason_start":"clickrow","reason_end":"endplay","skipped":null}"#.into(),
        r#"{"ts":"2023-02-02T21:00:00Z","ms_played":300000,"spotify_track_uri":null,"spotify_episode_uri":null,
           "audiobook_title":"Dune","audiobook_uri":"spotify:show:dune","audiobook_chapter_uri":"spotify:episode:dune-1",
           "audiobook_chapter_title":"Chapter 1","reason_end":"trackdone"}"#.into(),
        r#"{"ts":null,"ms_played":5000,"spotify_track_uri":"spotify:track:x"}"#.into(),
        teardrop.to_owned(),
    ];
    std::fs::write(&extended, format!("[{}]", rows.join(",\n"))).unwrap();
    let music = tmp.path().join("StreamingHistory_music_0.json");
    std::fs::write(
        &music,
        r#"[{"endTime":"2023-02-01 08:00","artistName":"Massive Attack","trackName":"Teardrop","msPlayed":201000},
            {"endTime":"2023-01-05 13:45","artistName":"Robyn","trackName":"Dancing On My Own","msPlayed":287000},
            {"endTime":"2023-01-05 13:45","artistName":"Robyn","trackName":"Dancing On My Own","msPlayed":287000},
            {"endTime":"2023-01-05 13:50","artistName":"","trackName":"","msPlayed":100}]"#,
    )
    .unwrap();
    let podcast = tmp.path().join("StreamingHistory_podcast_0.json");
    std::fs::write(
        &podcast,
        r#"[{"endTime":"2023-02-01 08:30","podcastName":"The Daily","episodeName":"Ep 1","msPlayed":600000}]"#,
    )
    .unwrap();
    for f in [&extended, &music, &podcast] {
        let head = std::fs::read(f).unwrap();
        assert!(
            encore_ingest::spotify::looks_like_spotify_export(&head),
            "{}",
            f.display()
        );
    }
    assert!(!encore_ingest::spotify::looks_like_spotify_export(
        br#"[{"event_id": "e1", "user_id": "u1", "ms_played": 1, "ts_end_ms": 2}]"#
    ));

    let ingestor =
        Ingestor::open(tmp.path().join("data").as_path(), IngestOptions::default()).unwrap();
    let files = [music.clone(), podcast.clone(), extended.clone()];
    let r = spotify_history(&ingestor, &files, "me").unwrap();
    // read: 6 extended plays (one listed twice), 3 music rows (one listed twice), 1 podcast
    // row; dropped: nothing named (once in each shape), no end time
    assert_eq!(r.rows, 10, "{r:?}");
    assert_eq!(
        r.dropped
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        [
            ("names no track, episode or chapter", 2),
            ("no end time", 1)
        ]
    );
    assert_eq!(r.dropped_examples.len(), 3);
    assert!(
        r.dropped_examples
            .iter()
            .any(|e| e.contains("Streaming_History_Audio_2023.json: entry 6: no end time"))
    );
    // stored once each: teardrop, angel, hang with me, the episode, the chapter, dancing on my
    // own; the account-data copies of teardrop and the episode, the repeated rows: duplicates
    assert_eq!(
        (r.ingest.accepted, r.ingest.duplicates, r.ingest.rejected),
        (6, 4, 0),
        "{:?}",
        r.ingest.first_rejects
    );
    let stats = encore_ingest::stats::event_stats(&ingestor).unwrap();
    assert_eq!(
        (stats.plays, stats.skips),
        (6, 2),
        "angel by button, hang with me by flag"
    );

    // names in the catalog, under the URIs; a name-only play under its names
    let info = ingestor.catalog().item_info().unwrap();
    assert_eq!(
        info["spotify:track:67Hna13dNDkZvBpTXRIaOJ"].title,
        "Teardrop"
    );
    let artist = info["spotify:track:67Hna13dNDkZvBpTXRIaOJ"]
        .artist_id
        .clone()
        .unwrap();
    assert_eq!(info[&artist].title, "Massive Attack");
    assert_eq!(
        info["spotify:episode:0Q86acNRm6V9GYx55SXKwf"].title,
        "Ep 1 (The Daily)"
    );
    assert_eq!(info["spotify:episode:dune-1"].title, "Chapter 1 (Dune)");
    let dancing: Vec<_> = info
        .iter()
        .filter(|(_, i)| i.title == "Dancing On My Own")
        .collect();
    assert_eq!(dancing.len(), 1);
    assert!(dancing[0].0.starts_with("spotify-name:"));
    assert_eq!(
        (r.catalog.tracks, r.catalog.albums, r.catalog.items),
        (4, 2, 2)
    );

    let log = ingestor.log(Table::Playback);
    log.seal().unwrap();
    let mut seen = Vec::new();
    log.scan(
        Some(&[
            "item_id",
            "item_type",
            "reason_end",
            "country",
            "private_session",
        ]),
        |b| {
            use arrow::array::{BooleanArray, StringArray};
            let s = |i: usize| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let private = b.column(4).as_any().downcast_ref::<BooleanArray>().unwrap();
            for i in 0..b.num_rows() {
                seen.push((
                    s(0).value(i).to_owned(),
                    s(1).value(i).to_owned(),
                    s(2).value(i).to_owned(),
                    s(3).value(i).to_owned(),
                    private.value(i),
                ));
            }
            Ok(())
        },
    )
    .unwrap();
    let find = |id: &str| {
        seen.iter()
            .find(|s| s.0 == id)
            .unwrap_or_else(|| panic!("{id} in {seen:?}"))
    };
    assert_eq!(find("spotify:track:67Hna13dNDkZvBpTXRIaOJ").1, "track");
    assert_eq!(
        find("spotify:track:3kcDcQ5VNHAMmpjMUjQdXl").2,
        "fwdbtn",
        "skipped: true"
    );
    let episode = find("spotify:episode:0Q86acNRm6V9GYx55SXKwf");
    assert_eq!(
        (episode.1.as_str(), episode.4),
        ("episode", true),
        "incognito"
    );
    assert_eq!(find("spotify:episode:dune-1").1, "chapter");

    // again, in the other order: nothing new, nothing dropped anew but the same rows
    let again = spotify_history(&ingestor, &[extended, music, podcast], "me").unwrap();
    assert_eq!((again.ingest.accepted, again.ingest.duplicates), (0, 10));
    // the IP address is not stored anywhere
    for entry in walk(tmp.path().join("data").as_path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"192.0.2.1"),
            "{} holds the IP",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn matrix_from_simulated_plays_counts_streams_per_user_item() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("w");
    let m = encore_sim::generate(
        &encore_sim::SimConfig::new(80, 3, 4),
        &world,
        encore_sim::Format::Parquet,
        &mut |_, _| {},
    )
    .unwrap();
    let files: Vec<PathBuf> = m
        .files
        .iter()
        .filter(|f| f.kind == "playback")
        .map(|f| world.join(&f.path))
        .collect();
    let ingestor =
        Ingestor::open(tmp.path().join("data").as_path(), IngestOptions::default()).unwrap();
    ingestor
        .ingest_files(&files, None, false, &|_, _| {})
        .unwrap();
    let all = build_matrix(
        &ingestor,
        MatrixOptions {
            min_ms_played: 0,
            include_play_counts: true,
            until_ms: None,
        },
    )
    .unwrap();
    let streams = build_matrix(&ingestor, MatrixOptions::default()).unwrap();
    assert!(streams.nnz() < all.nnz());
    let total: u64 = all.plays.iter().map(|&p| u64::from(p)).sum();
    assert!(
        total <= m.counts.playback_events && total > m.counts.playback_events * 9 / 10,
        "only non-private, consented plays"
    );
    for u in 0..all.users.len() {
        let row: Vec<u32> = all.row(u).map(|(i, _)| i).collect();
        assert!(
            row.windows(2).all(|w| w[0] < w[1]),
            "row items sorted and distinct"
        );
    }
    assert_eq!(*all.indptr.last().unwrap() as usize, all.nnz());
    // the streams matrix remembers the skips of its listeners and tracks, and only those
    assert!(
        all.skipped.is_empty(),
        "min_ms_played 0: nothing is shorter"
    );
    assert!(!streams.skipped.is_empty());
    assert!(
        streams
            .skipped
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
    );
    let skips: u64 = streams.skipped.iter().map(|s| u64::from(s.2)).sum();
    let short_in_matrix: u64 = {
        let user = |name: &str| streams.users.iter().position(|u| u == name);
        let item = |name: &str| streams.items.iter().position(|i| i == name);
        let mut n = 0;
        for u in 0..all.users.len() {
            for (i, plays) in all.row(u) {
                let (Some(su), Some(si)) = (user(&all.users[u]), item(&all.items[i as usize]))
                else {
                    continue;
                };
                let streamed = streams
                    .row(su)
                    .find(|&(x, _)| x as usize == si)
                    .map_or(0, |(_, p)| p);
                n += u64::from(plays - streamed);
            }
        }
        n
    };
    assert_eq!(
        skips, short_in_matrix,
        "every short play of a known pair, counted once"
    );
    // every cell, against a count taken straight from the generated files
    for (matrix, min_ms) in [
        (&all, 0),
        (&streams, encore_core::event::STREAM_THRESHOLD_MS),
    ] {
        let want = plays_per_pair(&files, min_ms);
        let mut got = std::collections::HashMap::new();
        for u in 0..matrix.users.len() {
            for (i, plays) in matrix.row(u) {
                got.insert(
                    (matrix.users[u].clone(), matrix.items[i as usize].clone()),
                    plays,
                );
            }
        }
        assert_eq!(got.len(), want.len(), "cells with min_ms_played {min_ms}");
        for (pair, n) in &want {
            assert_eq!(
                got.get(pair),
                Some(n),
                "{pair:?} with min_ms_played {min_ms}"
            );
        }
    }
}

/// Plays per (listener, track) in the Parquet playback `files` that the matrix may use (not in a
/// private session, not excluded from taste, personalization consented), at least `min_ms` long.
fn plays_per_pair(
    files: &[PathBuf],
    min_ms: u32,
) -> std::collections::HashMap<(String, String), u32> {
    use arrow::array::{Array, BooleanArray, StringArray, StructArray, UInt32Array};
    let mut out = std::collections::HashMap::new();
    for f in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = |name: &str| b.column_by_name(name).unwrap().clone();
            let (user, item, ms, private, excluded, consent) = (
                col("user_id"),
                col("item_id"),
                col("ms_played"),
                col("private_session"),
                col("taste_excluded"),
                col("consent"),
            );
            let user = user.as_any().downcast_ref::<StringArray>().unwrap();
            let item = item.as_any().downcast_ref::<StringArray>().unwrap();
            let ms = ms.as_any().downcast_ref::<UInt32Array>().unwrap();
            let private = private.as_any().downcast_ref::<BooleanArray>().unwrap();
            let excluded = excluded.as_any().downcast_ref::<BooleanArray>().unwrap();
            let consent = consent.as_any().downcast_ref::<StructArray>().unwrap();
            let personal = consent
                .column_by_name("personalization")
                .unwrap()
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                if private.value(i)
                    || excluded.value(i)
                    || !personal.value(i)
                    || ms.value(i) < min_ms
                {
                    continue;
                }
                *out.entry((user.value(i).to_owned(), item.value(i).to_owned()))
                    .or_insert(0) += 1;
            }
        }
    }
    out
}
