/*
 * servers/common/config.c: the one settings table of imd and imnode, each
 * binary taking its own rows; flags override files; the help text lists
 * every default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define ARGV(...) ((char *[]){"x", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"x", __VA_ARGS__}) / sizeof(char *)))

static void
test_config_each_binary_takes_its_own_rows(void **state)
{
	srv_config c;
	char err[256];

	(void)state;
	srv_config_init(&c, SRV_IMD);
	assert_string_equal(c.listen, "127.0.0.1");
	assert_int_equal(c.port, 7600);
	assert_int_equal(srv_config_set(&c, "db", "a.db", err, sizeof(err)), 0);
	assert_string_equal(c.store, "a.db");
	assert_int_equal(srv_config_set(&c, "role", "router", err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "unknown key"));
	assert_int_equal(srv_config_set(&c, "ttl", "5", err, sizeof(err)), -1);
	/* A tuning key is every binary's. */
	assert_int_equal(srv_config_set(&c, "rto-ms", "300", err, sizeof(err)),
			 0);
	assert_int_equal(c.cn.rto_ms, 300);

	srv_config_init(&c, SRV_TOKEN);
	assert_int_equal(c.ttl, 86400);
	assert_int_equal(srv_config_set(&c, "ttl", "0", err, sizeof(err)), -1);
	assert_int_equal(c.ttl, 86400);
	assert_int_equal(srv_config_set(&c, "db", "b.db", err, sizeof(err)), 0);

	srv_config_init(&c, SRV_NODE);
	assert_int_equal(c.expect, 1);
	assert_int_equal(c.dead_after_ms, IM_NODE_DEAD_AFTER_MS);
	assert_int_equal(c.stop_ms, 2000);
	assert_int_equal(srv_config_set(&c, "db", "a.db", err, sizeof(err)),
			 -1);
	assert_int_equal(srv_config_set(&c, "heartbeat-ms", "5", err,
					sizeof(err)),
			 -1);
	assert_int_equal(c.heartbeat_ms, IM_NODE_HEARTBEAT_MS);
	assert_int_equal(srv_config_set(&c, "port_file", "p", err,
					sizeof(err)),
			 0);
	assert_string_equal(c.port_file, "p");
}

static void
test_config_flags_override_the_file_and_required_ones_are_checked(
	void **state)
{
	char path[] = "/tmp/test_config.XXXXXX";
	srv_config c;
	char err[512];
	FILE *f;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f, "# a node\nrole = chatter\nname = c1\nslots = 64\n"
		   "store = s.db\n");
	fclose(f);
	srv_config_init(&c, SRV_NODE);
	assert_int_equal(srv_config_parse(&c,
					  ARGC("--slots=32", "--config", path,
					       "--listen", "-"),
					  ARGV("--slots=32", "--config", path,
					       "--listen", "-"),
					  1, err, sizeof(err)),
			 0);
	assert_string_equal(c.role, "chatter");
	assert_int_equal(c.slots, 32);
	assert_string_equal(c.listen, "-");
	srv_config_init(&c, SRV_NODE);
	assert_int_equal(srv_config_parse(&c, ARGC("--role", "router"),
					  ARGV("--role", "router"), 1, err,
					  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "--name"));
	assert_int_equal(srv_config_parse(&c, ARGC("--name"), ARGV("--name"),
					  1, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "needs a value"));
	assert_int_equal(srv_config_parse(&c, ARGC("--x", "1", "-h"),
					  ARGV("--x", "1", "-h"), 1, err,
					  sizeof(err)),
			 1);
	srv_config_init(&c, SRV_IMD);
	f = fopen(path, "a");
	assert_non_null(f);
	fprintf(f, "no equals sign\n");
	fclose(f);
	assert_int_equal(srv_config_load(&c, path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":2: unknown key 'role'"));
	unlink(path);
}

static void
test_config_secret_file_replaces_the_secret_and_must_be_long_enough(
	void **state)
{
	char path[] = "/tmp/test_config_secret.XXXXXX";
	srv_config c;
	char err[512];
	int fd;

	(void)state;
	srv_config_init(&c, SRV_IMD);
	assert_int_equal(srv_config_secret(&c, err, sizeof(err)), -1);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789abcdefXYZ\r\n", 21), 21);
	close(fd);
	snprintf(c.secret, sizeof(c.secret), "short");
	snprintf(c.secret_file, sizeof(c.secret_file), "%s", path);
	assert_int_equal(srv_config_secret(&c, err, sizeof(err)), 0);
	assert_string_equal(c.secret, "0123456789abcdefXYZ");
	unlink(path);
	assert_int_equal(srv_config_secret(&c, err, sizeof(err)), -1);
}

static void
test_config_tls_settings_must_go_together(void **state)
{
	srv_config c;
	connector_tls_opts t;
	char err[256];

	(void)state;
	srv_config_init(&c, SRV_NODE);
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), 0);
	assert_null(t.cert);
	assert_int_equal(srv_config_set(&c, "tls-key", "k.pem", err,
					sizeof(err)),
			 0);
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "need tls_cert"));
	assert_int_equal(srv_config_set(&c, "tls_cert", "c.pem", err,
					sizeof(err)),
			 0);
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), 1);
	assert_string_equal(t.cert, "c.pem");
	assert_string_equal(t.key, "k.pem");
	assert_int_equal(t.client_auth, CONNECTOR_TLS_CLIENT_NONE);
	assert_int_equal(srv_config_set(&c, "tls_client_auth", "sometimes",
					err, sizeof(err)),
			 0);
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "none, optional or require"));
	assert_int_equal(srv_config_set(&c, "tls_client_auth", "require", err,
					sizeof(err)),
			 0);
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "needs tls_client_ca"));
	assert_int_equal(srv_config_set(&c, "tls_client_ca", "ca.pem", err,
					sizeof(err)),
			 0);
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), 1);
	assert_int_equal(t.client_auth, CONNECTOR_TLS_CLIENT_REQUIRE);
	assert_string_equal(t.client_ca, "ca.pem");
	c.tls_key[0] = '\0';
	assert_int_equal(srv_config_tls(&c, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "tls_cert needs tls_key"));
}

static void
test_config_help_lists_every_default(void **state)
{
	char buf[16384];
	size_t n;
	FILE *f = tmpfile();

	(void)state;
	assert_non_null(f);
	srv_config_usage(SRV_NODE, f);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_non_null(strstr(buf, "--dead_after_ms"));
	assert_non_null(strstr(buf, "(default 1500)"));
	assert_non_null(strstr(buf, "--store"));
	assert_non_null(strstr(buf, "(required)"));
	assert_non_null(strstr(buf, "--rto_ms"));
	assert_non_null(strstr(buf, "(default 5000)"));
	assert_null(strstr(buf, "--wal_autocheckpoint"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_each_binary_takes_its_own_rows),
		cmocka_unit_test(
			test_config_flags_override_the_file_and_required_ones_are_checked),
		cmocka_unit_test(
			test_config_secret_file_replaces_the_secret_and_must_be_long_enough),
		cmocka_unit_test(test_config_tls_settings_must_go_together),
		cmocka_unit_test(test_config_help_lists_every_default),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
