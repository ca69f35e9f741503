// SPDX-License-Identifier: MIT
// Unit tests of orphand's command-line parsing and policy values.
#include <doctest/doctest.h>

#include <signal.h>

#include <string>
#include <vector>

#include "options.hpp"
#include "pidfd.hpp"

using namespace orphand;

namespace {

Options parse(std::vector<std::string> args) {
    args.insert(args.begin(), "orphand");
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    return parse_options(static_cast<int>(args.size()), argv.data());
}

} // namespace

TEST_CASE("defaults: SIGTERM then SIGKILL after 5 s") {
    Options o = parse({});
    CHECK(o.policy.signal == SIGTERM);
    CHECK(o.policy.grace_ms == 5000);
    CHECK(o.socket_path.empty());
}

TEST_CASE("policy options") {
    Options o = parse({"--signal", "HUP", "--grace", "0.25", "--socket", "/tmp/x.sock"});
    CHECK(o.policy.signal == SIGHUP);
    CHECK(o.policy.grace_ms == 250);
    CHECK(o.socket_path == "/tmp/x.sock");
    CHECK(parse({"--signal=SIGKILL"}).policy.signal == SIGKILL);
    CHECK(parse({"--signal=9"}).policy.signal == 9);
    CHECK(parse({"--grace=never"}).policy.grace_ms == orphand::proto::kGraceNever);
}

TEST_CASE("bad values are usage errors naming the problem") {
    CHECK_THROWS_WITH_AS(parse({"--signal", "NOPE"}), "invalid signal: \"NOPE\"", UsageError);
    CHECK_THROWS_AS(parse({"--signal", "0"}), UsageError);
    CHECK_THROWS_AS(parse({"--signal", "65"}), UsageError);
    CHECK_THROWS_AS(parse({"--grace", "-1"}), UsageError);
    CHECK_THROWS_AS(parse({"--grace", "abc"}), UsageError);
    CHECK_THROWS_AS(parse({"--grace", "nan"}), UsageError);
    CHECK_THROWS_AS(parse({"--socket", "relative.sock"}), UsageError);
    CHECK_THROWS_AS(parse({"--max-connections", "-3"}), UsageError);
    CHECK_THROWS_WITH_AS(parse({"--frobnicate"}), "unknown option \"--frobnicate\"", UsageError);
    CHECK_THROWS_AS(parse({"--signal"}), UsageError);
    CHECK_THROWS_AS(parse({"stray"}), UsageError);
}

TEST_CASE("signal names round-trip") {
    CHECK(signal_name(SIGTERM) == "SIGTERM");
    CHECK(parse_signal("SIGTERM") == SIGTERM);
    CHECK(parse_signal("TERM") == SIGTERM);
    CHECK(parse_signal("") == -1);
    CHECK(describe_exit(9) == "killed by SIGKILL");
    CHECK(describe_exit(3 << 8) == "exited with status 3");
}
