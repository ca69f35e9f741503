// SPDX-License-Identifier: MIT
// libFuzzer target: the record framer and decoder (protocol.hpp) against a plain reference.
//
// Input: one byte that seeds how the stream is cut into reads, then the stream. Messages switch
// the framer from 12-byte records to 32-byte requests on a HELLO action, as the daemon does.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "orphand/protocol.hpp"

namespace {

using namespace orphand::proto;

void require(bool ok) {
    if (!ok)
        std::abort();
}

uint32_t action_of(const unsigned char *msg) {
    return load<Record>(msg).action;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint32_t seed = data[0] * 2654435761u + 1;
    const unsigned char *stream = data + 1;
    size_t len = size - 1;

    // Reference: walk the whole stream at once.
    std::vector<std::vector<unsigned char>> want;
    size_t msg_size = sizeof(Record), pos = 0;
    while (len - pos >= msg_size) {
        want.emplace_back(stream + pos, stream + pos + msg_size);
        pos += msg_size;
        if (action_of(want.back().data()) == kHello)
            msg_size = sizeof(Request);
    }
    size_t want_pending = len - pos;

    // The framer, fed in reads of pseudo-random length (empty reads included).
    Framer framer;
    std::vector<std::vector<unsigned char>> got;
    size_t fed = 0;
    while (fed < len) {
        seed = seed * 1103515245u + 12345u;
        size_t chunk = (seed >> 16) % 48;
        if (chunk > len - fed)
            chunk = len - fed;
        // A copy, so that reading past the chunk is caught by ASan.
        std::vector<unsigned char> buf(stream + fed, stream + fed + chunk);
        size_t n = framer.feed(buf.data(), buf.size(), [&](const unsigned char *m, size_t s) {
            require(s == framer.size());
            got.emplace_back(m, m + s);
            if (action_of(m) == kHello)
                framer.set_size(sizeof(Request));
            if (s == sizeof(Request)) {
                auto q = load<Request>(m);
                require(reason_text(q.scope) != nullptr && reason_text(q.flags) != nullptr);
            }
        });
        (void)n;
        fed += chunk;
        require(framer.pending() < framer.size());
    }
    require(got == want);
    require(framer.pending() == want_pending);
    return 0;
}
