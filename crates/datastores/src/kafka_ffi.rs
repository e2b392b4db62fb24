//! What the Kafka code that calls librdkafka's C API directly shares: ownership of the objects it
//! creates, C strings, and error codes read as integers (the bindings type them as a Rust enum,
//! and a code the enum does not list, a newer broker's, would be undefined behaviour as that
//! enum). The admin requests rdkafka's safe API lacks (IncrementalAlterConfigs, ListConsumerGroups,
//! ListConsumerGroupOffsets) are built on it.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int};

/// One librdkafka object, destroyed with its destructor on every way out.
pub(crate) struct Owned<T>(pub(crate) *mut T, pub(crate) unsafe extern "C" fn(*mut T));

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the constructor that matches the destructor, is
            // owned by this value alone, and is not used after this.
            unsafe { (self.1)(self.0) }
        }
    }
}

/// Copies a C string; null reads as empty.
///
/// # Safety
/// `ptr` is null or a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: not null, so NUL-terminated and valid, as the caller promises.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

unsafe extern "C" {
    #[link_name = "rd_kafka_event_error"]
    pub(crate) fn event_error(event: *mut rdkafka_sys::rd_kafka_event_t) -> c_int;
    #[link_name = "rd_kafka_ConfigResource_error"]
    #[cfg(feature = "bootstrap")]
    pub(crate) fn resource_error(resource: *const rdkafka_sys::rd_kafka_ConfigResource_t) -> c_int;
    #[link_name = "rd_kafka_err2name"]
    fn err2name(code: c_int) -> *const c_char;
}

/// The code's name as librdkafka spells it (`UNSUPPORTED_VERSION`, `_TIMED_OUT`).
pub(crate) fn error_name(code: c_int) -> String {
    // SAFETY: err2name accepts any code and returns a static string (or null).
    let name = unsafe { err2name(code) };
    if name.is_null() {
        return format!("error {code}");
    }
    // SAFETY: a NUL-terminated static string.
    unsafe { text(name) }
}
