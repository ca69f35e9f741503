// SPDX-License-Identifier: MIT
// UniqueFd: the single owner of a file descriptor (header-only).
#pragma once

#include <unistd.h>

#include <utility>

namespace orphand {

// Move-only owner of an fd; closes it on destruction. -1 means empty.
class UniqueFd {
  public:
    UniqueFd() = default;
    // Takes ownership of `fd` (which may be -1).
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd &&other) noexcept : fd_(other.release()) {}
    UniqueFd &operator=(UniqueFd &&other) noexcept {
        reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }

    // Gives up ownership without closing.
    [[nodiscard]] int release() { return std::exchange(fd_, -1); }

    // Closes the current fd (if any) and takes ownership of `fd`.
    void reset(int fd = -1) {
        int old = std::exchange(fd_, fd);
        if (old >= 0)
            ::close(old);
    }

  private:
    int fd_ = -1;
};

} // namespace orphand
