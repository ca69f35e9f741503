// SPDX-License-Identifier: MIT
// Unit tests of the pid table: insertion, lookup and backward-shift deletion under collisions.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <random>
#include <vector>

#include "process_table.hpp"

using orphand::PidTable;

namespace {

struct Item {
    pid_t pid_;
    pid_t pid() const { return pid_; }
};

} // namespace

TEST_CASE("pid table agrees with std::map through random inserts and erases") {
    PidTable<Item> table;
    std::map<pid_t, std::unique_ptr<Item>> reference;
    std::mt19937 rng(12345);
    // A small pid range forces long probe runs, wrap-around and many collisions.
    std::uniform_int_distribution<pid_t> pid(1, 3000);
    for (int step = 0; step < 200000; ++step) {
        pid_t p = pid(rng);
        auto it = reference.find(p);
        if (it == reference.end()) {
            auto item = std::make_unique<Item>(Item{p});
            table.insert(item.get());
            reference.emplace(p, std::move(item));
        } else if (rng() % 2) {
            table.erase(it->second.get());
            reference.erase(it);
        }
        if (step % 997 == 0) {
            REQUIRE(table.size() == reference.size());
            for (pid_t q = 1; q <= 3000; ++q) {
                auto r = reference.find(q);
                REQUIRE(table.find(q) == (r == reference.end() ? nullptr : r->second.get()));
            }
        }
    }
    size_t visited = 0;
    table.for_each([&](Item *i) {
        CHECK(reference.count(i->pid()) == 1);
        ++visited;
    });
    CHECK(visited == reference.size());
    while (Item *i = table.any()) {
        table.erase(i);
        reference.erase(i->pid());
    }
    CHECK(table.empty());
    CHECK(reference.empty());
    CHECK(table.find(1) == nullptr);
}
