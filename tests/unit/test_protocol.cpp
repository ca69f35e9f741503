// SPDX-License-Identifier: MIT
// Unit tests of the wire format: record layout and stream framing.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "orphand/protocol.hpp"

using namespace orphand::proto;

namespace {

std::vector<unsigned char> bytes_of(const Record &r) {
    std::vector<unsigned char> out(sizeof(r));
    std::memcpy(out.data(), &r, sizeof(r));
    return out;
}

struct Collector {
    std::vector<Record> records;
    void operator()(const unsigned char *m, size_t size) {
        REQUIRE(size == sizeof(Record));
        records.push_back(load<Record>(m));
    }
};

} // namespace

TEST_CASE("legacy record is 12 bytes in host order") {
    Record r{0x01020304, 0x05060708, kRegister};
    auto b = bytes_of(r);
    REQUIRE(b.size() == 12);
    uint32_t parent;
    std::memcpy(&parent, b.data(), 4);
    CHECK(parent == 0x01020304);
    CHECK(load<Record>(b.data()).action == kRegister);
}

TEST_CASE("framer delivers records split across reads") {
    Framer f;
    Collector c;
    auto b = bytes_of({1, 2, kRegister});
    for (unsigned char byte : b)
        f.feed(&byte, 1, std::ref(c));
    REQUIRE(c.records.size() == 1);
    CHECK(c.records[0].parent == 1);
    CHECK(c.records[0].child == 2);
    CHECK(f.pending() == 0);
}

TEST_CASE("framer delivers many records per read and holds back a trailing partial one") {
    Framer f;
    Collector c;
    std::vector<unsigned char> stream;
    for (uint32_t i = 1; i <= 5; ++i) {
        auto b = bytes_of({i, i + 100, kRegister});
        stream.insert(stream.end(), b.begin(), b.end());
    }
    auto tail = bytes_of({42, 43, kUnregister});
    stream.insert(stream.end(), tail.begin(), tail.begin() + 7);
    CHECK(f.feed(stream.data(), stream.size(), std::ref(c)) == 5);
    CHECK(c.records.size() == 5);
    CHECK(c.records[4].child == 105);
    CHECK(f.pending() == 7);
    CHECK(f.feed(tail.data() + 7, 5, std::ref(c)) == 1);
    REQUIRE(c.records.size() == 6);
    CHECK(c.records[5].parent == 42);
    CHECK(c.records[5].action == kUnregister);
}

TEST_CASE("framer switches message size from the callback (HELLO)") {
    Framer f;
    std::vector<size_t> sizes;
    std::vector<unsigned char> stream;
    auto hello = bytes_of({kHelloMagic, kVersion, kHello});
    stream.insert(stream.end(), hello.begin(), hello.end());
    Request q{};
    q.action = kPing;
    q.seq = 9;
    const auto *qb = reinterpret_cast<const unsigned char *>(&q);
    stream.insert(stream.end(), qb, qb + sizeof(q));
    f.feed(stream.data(), stream.size(), [&](const unsigned char *m, size_t size) {
        sizes.push_back(size);
        if (size == sizeof(Record) && load<Record>(m).action == kHello)
            f.set_size(sizeof(Request));
        else
            CHECK(load<Request>(m).seq == 9);
    });
    REQUIRE(sizes.size() == 2);
    CHECK(sizes[0] == 12);
    CHECK(sizes[1] == 32);
}

TEST_CASE("framer stops where the callback says and leaves the rest to be fed again") {
    Framer f;
    std::vector<unsigned char> stream;
    for (uint32_t i = 1; i <= 4; ++i) {
        auto b = bytes_of({i, 0, kRegister});
        stream.insert(stream.end(), b.begin(), b.end());
    }
    std::vector<uint32_t> seen;
    auto until_second = [&](const unsigned char *m, size_t) {
        seen.push_back(load<Record>(m).parent);
        return seen.size() != 2;
    };
    // Half a record first: held as partial, all of it taken.
    CHECK(f.feed_until(stream.data(), 6, until_second) == 6);
    CHECK(f.remaining() == 6);
    // The first record completes, the second stops the feed: the rest is not taken.
    CHECK(f.feed_until(stream.data() + 6, stream.size() - 6, until_second) == 18);
    CHECK(seen == std::vector<uint32_t>{1, 2});
    CHECK(f.pending() == 0);
    CHECK(f.remaining() == sizeof(Record));
    size_t taken = 24;
    CHECK(f.feed_until(stream.data() + taken, stream.size() - taken, until_second) == 24);
    CHECK(seen == std::vector<uint32_t>{1, 2, 3, 4});
}

TEST_CASE("every reason has text") {
    for (uint32_t r = 0; r < kReasonCount; ++r)
        CHECK(std::strcmp(reason_text(r), "unknown reason") != 0);
    CHECK(std::strcmp(reason_text(kReasonCount), "unknown reason") == 0);
}
