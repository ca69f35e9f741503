// SPDX-License-Identifier: MIT
// Result<T>: a value or a negative errno with a short reason, for expected runtime failures.
#pragma once

#include <cassert>
#include <optional>
#include <utility>

namespace orphand {

// An error: a negative errno and a static string saying what failed.
struct Error {
    int code = 0;          // negative errno
    const char *what = ""; // static text, e.g. "pidfd_open"
};

// Either a T or an Error. g++ 12 has no std::expected in C++20.
template <typename T> class [[nodiscard]] Result {
  public:
    Result(T value) : value_(std::move(value)) {}
    Result(Error error) : error_(error) { assert(error.code < 0); }

    bool ok() const { return value_.has_value(); }
    explicit operator bool() const { return ok(); }
    T &value() & { return *value_; }
    T &&value() && { return std::move(*value_); }
    T *operator->() { return &*value_; }
    T &operator*() { return *value_; }
    const Error &error() const { return error_; }
    int code() const { return error_.code; }

  private:
    std::optional<T> value_;
    Error error_{};
};

template <> class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error error) : error_(error) { assert(error.code < 0); }

    bool ok() const { return error_.code == 0; }
    explicit operator bool() const { return ok(); }
    const Error &error() const { return error_; }
    int code() const { return error_.code; }

  private:
    Error error_{};
};

} // namespace orphand
