// SPDX-License-Identifier: MIT
// orphand's entry point: options, logging, then the server's event loop.
#include <cstdio>
#include <exception>

#include "log.hpp"
#include "options.hpp"
#include "orphand_config.h"
#include "server.hpp"

int main(int argc, char **argv) {
    using namespace orphand;
    Options options;
    try {
        options = parse_options(argc, argv);
    } catch (const UsageError &e) {
        std::fprintf(stderr, "orphand: %s\nTry 'orphand --help'.\n", e.what());
        return 2;
    }
    if (options.help) {
        std::fputs(usage_text(), stdout);
        return 0;
    }
    if (options.version) {
        std::printf("orphand %s\n", ORPHAND_VERSION);
        return 0;
    }
    log_setup(options.log_target, options.log_level);
    try {
        Server server(options);
        return server.run();
    } catch (const UsageError &e) {
        std::fprintf(stderr, "orphand: %s\n", e.what());
        return 2;
    } catch (const std::exception &e) {
        log_fmt(LOG_ERR, "orphand: {}", e.what());
        return 1;
    }
}
