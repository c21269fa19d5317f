//! Upload sessions. Each open upload is one [`UploadSession`] actor that owns
//! the running digest and the offset, so chunks of one upload are applied one
//! at a time and in order. [`UploadRegistry`] maps upload ids to sessions.

mod body;
mod commit;
mod messages;
mod monolithic;
mod registry;
mod session;

pub use body::{pump, Body};
pub use commit::CommitError;
pub use messages::{Append, Cancel, Finish, Status, UploadError};
pub use monolithic::store_blob;
pub use registry::{Session, Shutdown, UploadRegistry};
pub use session::UploadSession;
