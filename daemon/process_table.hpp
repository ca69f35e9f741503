// SPDX-License-Identifier: MIT
// ProcessTable: an open-addressing map from pid to watched Process, 8 bytes a slot.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace orphand {

// Maps pids to objects that know their own pid (T::pid()). Linear probing with backward-shift
// deletion: no tombstones, no per-entry allocation. A node-based map would cost about 40 bytes
// an entry; this costs 8 / load factor (between 11 and 21 bytes).
template <typename T> class PidTable {
  public:
    T *find(pid_t pid) const {
        if (size_ == 0)
            return nullptr;
        for (size_t i = home(pid);; i = (i + 1) & mask_) {
            T *t = slots_[i];
            if (!t)
                return nullptr;
            if (t->pid() == pid)
                return t;
        }
    }

    // `t`'s pid must not be in the table.
    void insert(T *t) {
        if ((size_ + 1) * 4 > slots_.size() * 3)
            grow();
        size_t i = home(t->pid());
        while (slots_[i])
            i = (i + 1) & mask_;
        slots_[i] = t;
        ++size_;
    }

    // Removes the entry for `t` (by identity) if present.
    void erase(const T *t) {
        if (size_ == 0)
            return;
        size_t i = home(t->pid());
        while (slots_[i] != t) {
            if (!slots_[i])
                return;
            i = (i + 1) & mask_;
        }
        slots_[i] = nullptr;
        --size_;
        // Shift later members of the probe run back so that every entry stays reachable.
        for (size_t j = (i + 1) & mask_; slots_[j]; j = (j + 1) & mask_) {
            size_t h = home(slots_[j]->pid());
            bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
            if (movable) {
                slots_[i] = slots_[j];
                slots_[j] = nullptr;
                i = j;
            }
        }
        if (size_ == 0)
            slots_ = {}; // give the memory back once idle
    }

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

    template <typename F> void for_each(F &&fn) const {
        for (T *t : slots_)
            if (t)
                fn(t);
    }

    // Any entry, or null when empty.
    T *any() const {
        for (T *t : slots_)
            if (t)
                return t;
        return nullptr;
    }

  private:
    size_t home(pid_t pid) const {
        // Fibonacci hashing: consecutive pids spread over the table.
        return static_cast<size_t>(
            (static_cast<uint64_t>(static_cast<uint32_t>(pid)) * 0x9E3779B97F4A7C15ull) >> shift_);
    }

    void grow() {
        size_t capacity = slots_.empty() ? 16 : slots_.size() * 2;
        std::vector<T *> old;
        old.swap(slots_);
        slots_.assign(capacity, nullptr);
        mask_ = capacity - 1;
        shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(capacity));
        size_ = 0;
        for (T *t : old)
            if (t)
                insert(t);
    }

    std::vector<T *> slots_;
    size_t size_ = 0;
    size_t mask_ = 0;
    unsigned shift_ = 64;
};

} // namespace orphand
