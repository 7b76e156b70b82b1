pytest_plugins = ["tests.support.db", "tests.support.hls_fixtures", "tests.support.daemon"]
