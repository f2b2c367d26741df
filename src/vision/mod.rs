//! Vision: from a frame to an embedding, on the models loaded by [`model`]. In the order of the data:
//! [`detect`] finds faces, [`align`] warps the chosen one to 112x112, [`embed`] turns the crop into a
//! unit-norm embedding, [`fuse`] combines the embeddings of one approach's frames, [`liveness`] tells a live face from a print or a screen; [`pipeline`] strings those
//! steps together over a pool of workers, [`enrol`] holds the enrolment quality gate, [`qr`] reads visitor
//! passes from the same frames, [`aim`] turns a frame into the installer's aiming figures (numbers only),
//! and [`eval`] measures the path on labelled photos.
//!
//! Nothing here writes: no frame, crop or embedding reaches a file, a log or the network; buffers that held
//! pixels or embeddings are wiped on drop.

pub mod aim;
pub mod align;
pub mod detect;
pub mod embed;
pub mod enrol;
pub mod eval;
pub mod fuse;
pub mod liveness;
pub mod model;
pub mod pipeline;
pub mod qr;

#[cfg(test)]
mod tests {
    use zeroize::ZeroizeOnDrop;

    fn wipes_itself<T: ZeroizeOnDrop>() {}

    /// Removing the wipe from any of the types that hold pixels or an embedding fails this build.
    #[test]
    fn frames_crops_and_embeddings_wipe_themselves_on_drop() {
        wipes_itself::<crate::capture::Frame>();
        wipes_itself::<super::align::AlignedFace>();
        wipes_itself::<super::embed::Embedding>();
    }
}
