//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same entry points the fuzz targets use, as an ordinary test: an input
//! that once crashed stays fixed.

use std::path::Path;

use switchyard::fuzzing;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        run(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn request_decoder_corpus() {
    replay("decode_requests", fuzzing::decode_requests);
}

#[test]
fn response_decoder_corpus() {
    replay("decode_responses", fuzzing::decode_responses);
}

#[test]
fn stream_translator_corpus() {
    replay("translate_stream", fuzzing::translate_stream);
}

#[test]
fn config_loader_corpus() {
    replay("load_config", fuzzing::load_config);
}
