//! Soft targets: the teacher's top-k logits per frame, stored compactly.
