// Replaced by the fbank criterion bench (helper in progress).
fn main() {}
