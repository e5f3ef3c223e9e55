//! A helper the test crates share (included with `#[path]`: integration tests cannot import
//! each other).

/// `a` and `b` side by side, after checking that they are equally long and not empty: a
/// comparison loop over a shorter or empty list would pass without comparing anything.
pub fn paired<A, B>(a: A, b: B) -> std::iter::Zip<A::IntoIter, B::IntoIter>
where
    A: IntoIterator,
    B: IntoIterator,
    A::IntoIter: ExactSizeIterator,
    B::IntoIter: ExactSizeIterator,
{
    let (a, b) = (a.into_iter(), b.into_iter());
    assert_eq!(a.len(), b.len(), "the compared lists differ in length");
    assert!(a.len() > 0, "an empty comparison checks nothing");
    a.zip(b)
}
