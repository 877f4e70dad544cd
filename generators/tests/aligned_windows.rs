//! Issue 13's document-aligned windows (`train.windows = "aligned"`): every window opens with `<eot>` and a whole
//! document, no document is split, the padding is never a target, one pass places every document exactly once,
//! and a resumed mixer replays the same windows. Checked on hand-made documents whose first token names them.

use physlab_generators::corpus::{aligned_packing, DocSource, SourceCursor, WindowMixer};
use physlab_generators::tokenizer::EOT;

/// Document i: its marker 1000 + i, then 1 + i % 7 filler tokens (5); lengths 2–8, 3–9 with its `<eot>`.
struct Docs(Vec<Vec<u32>>);

impl Docs {
    fn new(n: usize) -> Self {
        Docs(
            (0..n)
                .map(|i| {
                    let mut d = vec![1000 + i as u32];
                    d.extend(std::iter::repeat_n(5, 1 + i % 7));
                    d
                })
                .collect(),
        )
    }
}

impl DocSource for Docs {
    fn cycle(&self) -> u64 {
        self.0.len() as u64
    }
    fn doc(&self, _pass: u64, i: u64, out: &mut Vec<u32>) -> u32 {
        out.extend_from_slice(&self.0[i as usize]);
        0
    }
}

/// Splits an aligned window into its documents (each checked whole against `docs`) and returns their indices
/// and the number of text tokens; everything after them must be padding.
fn parse(docs: &Docs, w: &[u32], real: &[bool]) -> (Vec<usize>, usize) {
    assert_eq!(w[0], EOT, "a window opens with <eot>: {w:?}");
    let mut i = 1;
    let mut found = Vec::new();
    while i < w.len() && real[i] {
        let id = (w[i] - 1000) as usize;
        let d = &docs.0[id];
        assert_eq!(&w[i..i + d.len()], d.as_slice(), "document {id} whole");
        assert_eq!(w[i + d.len()], EOT, "document {id} followed by <eot>");
        found.push(id);
        i += d.len() + 1;
    }
    assert!(real[..i].iter().all(|&r| r), "text is marked text");
    assert!(
        w[i..].iter().all(|&t| t == EOT) && real[i..].iter().all(|&r| !r),
        "after the documents only padding: {w:?}"
    );
    (found, i)
}

#[test]
fn every_aligned_window_opens_with_a_whole_document_and_a_pass_places_each_once() {
    let docs = Docs::new(53);
    let len = 21;
    let packing = aligned_packing(&docs, 7, 0, len, u64::MAX);
    let per_pass = packing.windows;
    assert_eq!(packing.cut, 0);
    // Every document of the pass, and those of the next pass that share the last window (fewer than a window's).
    let n = docs.0.len() as u64;
    assert!(packing.documents >= n && packing.documents < n + 7);
    // Its text targets: every document and its <eot>, once, and that spill-over (less than a window).
    let doc_tokens: u64 = docs.0.iter().map(|d| d.len() as u64 + 1).sum();
    assert!(packing.text_targets >= doc_tokens && packing.text_targets < doc_tokens + len as u64);
    assert_eq!(
        packing.overhead(len),
        (per_pass * (len as u64 - 1)) as f64 / packing.text_targets as f64
    );
    // Measured on the first 20 documents only, it stops there.
    assert!(aligned_packing(&docs, 7, 0, len, 20).documents < 29);
    let mut cur = SourceCursor::new(&docs, 7, 0);
    cur.set_aligned(true);
    // Three passes: windows are drawn until every document of them is placed; each is placed exactly 3 times.
    let mut seen = vec![0u32; docs.0.len()];
    let mut windows = 0u64;
    let mut text = 0usize;
    while cur.docs_whole < 3 * docs.0.len() as u64 {
        let (w, c, real) = cur.next_window_flags(len);
        assert_eq!(w.len(), len);
        assert!(
            c.iter().zip(&real).all(|(&c, &r)| c || !r),
            "plain text counts"
        );
        let (found, n) = parse(&docs, &w, &real);
        assert!(!found.is_empty(), "no window is only padding");
        // The next document did not fit (else it would be here): no window closes with room to spare for it.
        text += n;
        for id in found {
            seen[id] += 1;
        }
        windows += 1;
    }
    // The last window may go on into the fourth pass: those documents are placed a fourth time, no other.
    let extra = cur.docs_whole - 3 * docs.0.len() as u64;
    assert!(seen.iter().all(|&k| k == 3 || k == 4), "{seen:?}");
    assert_eq!(seen.iter().map(|&k| (k - 3) as u64).sum::<u64>(), extra);
    assert!(
        extra < 9,
        "at most one window's documents past the third pass"
    );
    // Three passes fill about three times the first pass's windows (the passes pack in other orders).
    assert!(
        windows.abs_diff(3 * per_pass) <= 3,
        "{windows} windows for 3 passes, {per_pass} for the first"
    );
    // All the text is there: each placement of a document and its <eot>, plus the opening <eot> of each window.
    let placed: usize = docs
        .0
        .iter()
        .zip(&seen)
        .map(|(d, &k)| (d.len() + 1) * k as usize)
        .sum();
    assert_eq!(text, placed + windows as usize);
    // The packing wastes less than a longest document per window.
    assert!((windows as usize) * len - text < windows as usize * 9);
}

#[test]
fn padding_is_never_a_target_and_stream_windows_weigh_every_target() {
    let docs = Docs::new(40);
    let (batch, context) = (6, 24);
    let sources: Vec<(&dyn DocSource, f64)> = vec![(&docs, 1.0)];
    let mut aligned = WindowMixer::new(sources.clone(), 3).unwrap();
    aligned.set_aligned(true);
    let mut replay = WindowMixer::new(sources.clone(), 3).unwrap();
    replay.set_aligned(true);
    let mut text_targets = 0.0f32;
    for _ in 0..4 {
        let (x, y, w) = aligned.next_batch_weighted(batch, context, false);
        for row in 0..batch {
            let xs = &x[row * context..(row + 1) * context];
            let ys = &y[row * context..(row + 1) * context];
            let ws = &w[row * context..(row + 1) * context];
            assert_eq!(xs[0], EOT as i32);
            assert!(
                ys[0] >= 1000,
                "the first target is the document's first token"
            );
            // Text targets first, then padding (weight 0, target <eot>).
            let k = ws.iter().take_while(|&&v| v == 1.0).count();
            assert!(ws[k..].iter().all(|&v| v == 0.0));
            assert!(ys[k..].iter().all(|&t| t == EOT as i32));
            assert_eq!(
                ys[k - 1],
                EOT as i32,
                "the last text target is a document's <eot>"
            );
            text_targets += k as f32;
        }
    }
    assert!(
        text_targets < (4 * batch * context) as f32,
        "some padding was drawn"
    );
    // A resumed mixer replays the windows drawn before its checkpoint and then sees the same batch.
    replay.fast_forward(4 * batch as u64, context + 1);
    assert_eq!(
        replay.next_batch_weighted(batch, context, false),
        aligned.next_batch_weighted(batch, context, false)
    );
    // Stream windows (the default) weigh every target 1 when the loss counts every token.
    let mut stream = WindowMixer::new(sources, 3).unwrap();
    let (_, _, w) = stream.next_batch_weighted(batch, context, false);
    assert!(w.iter().all(|&v| v == 1.0));
}

#[test]
fn a_document_longer_than_the_window_is_cut_and_counted() {
    // Documents of 2–8 tokens (3–9 with <eot>) and a window of 6: those of 6 tokens or more do not fit whole.
    let docs = Docs::new(14);
    let len = 6;
    let long = docs.0.iter().filter(|d| d.len() + 2 > len).count() as u64;
    assert_eq!(aligned_packing(&docs, 1, 0, len, u64::MAX).cut, long);
    let mut cur = SourceCursor::new(&docs, 1, 0);
    cur.set_aligned(true);
    while cur.docs_whole + cur.docs_cut < docs.0.len() as u64 {
        let (w, _, real) = cur.next_window_flags(len);
        assert_eq!(w[0], EOT);
        assert!(
            w[1] >= 1000,
            "every window still opens with a document: {w:?}"
        );
        assert!(real[1]);
    }
    assert_eq!(cur.docs_cut, long);
}
