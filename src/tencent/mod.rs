//! Facts of the Tencent IM REST API: which APIs exist and how they behave, what their error codes
//! mean, and how requests are signed (TLSSigAPIv2 UserSig).

pub mod apis;
pub mod catalogue;
pub mod codes;
mod envelope;
pub mod usersig;
