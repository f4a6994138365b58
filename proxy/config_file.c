#include "proxy/config_file.h"

#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <string.h>

/* A setting's value as opt_set() takes it.  Returns 0, or -1 with *why. */
static int value_text(const config_setting_t *st, const struct opt_def *d, char *buf,
                      size_t n, const char **why)
{
    int type = config_setting_type(st);
    if (d->kind == OPT_FLAG) {
        if (type != CONFIG_TYPE_BOOL) {
            *why = "expected true or false";
            return -1;
        }
        snprintf(buf, n, "%s", config_setting_get_bool(st) ? "true" : "false");
        return 0;
    }
    switch (type) {
    case CONFIG_TYPE_STRING:
        snprintf(buf, n, "%s", config_setting_get_string(st));
        return 0;
    case CONFIG_TYPE_INT:
        snprintf(buf, n, "%d", config_setting_get_int(st));
        return 0;
    case CONFIG_TYPE_INT64:
        snprintf(buf, n, "%lld", config_setting_get_int64(st));
        return 0;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, n, "%.17g", config_setting_get_float(st));
        return 0;
    default:
        *why = "expected a string or a number";
        return -1;
    }
}

/* Applies one setting of scope `scope` (into c, or service s).  Returns 0,
 * or -1 with *why. */
static int apply(const config_setting_t *st, enum opt_scope scope, struct shim_config *c,
                 struct service_config *s, const char **why)
{
    char text[512];
    const char *key = config_setting_name(st);
    const struct opt_def *d = opt_by_key(key);
    if (d == NULL || d->scope != scope) {
        *why = d == NULL ? "unknown setting" : scope == OPT_GLOBAL
                                                   ? "a service setting outside a service"
                                                   : "a global setting inside a service";
        return -1;
    }
    if (d->kind != OPT_LIST) {
        if (value_text(st, d, text, sizeof(text), why) == -1)
            return -1;
        return opt_set(d, text, c, s, why);
    }
    if (config_setting_type(st) == CONFIG_TYPE_STRING)   /* a list of one */
        return opt_set(d, config_setting_get_string(st), c, s, why);
    if (!config_setting_is_aggregate(st)) {
        *why = "expected a list of strings: [ \"10.0.0.0/8\", \"2001:db8::/32\" ]";
        return -1;
    }
    for (int i = 0; i < config_setting_length(st); i++) {
        const config_setting_t *e = config_setting_get_elem(st, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            *why = "expected a list of strings";
            return -1;
        }
        if (opt_set(d, config_setting_get_string(e), c, s, why) == -1)
            return -1;
    }
    return 0;
}

int config_file_load(const char *path, struct shim_config *c, char *err, size_t errlen)
{
    config_t cf;
    const char *why = NULL;
    int line = 0, lines[SHIM_MAX_SERVICES], rc = -1;
    char what[160] = "";

    shim_config_defaults(c);
    config_init(&cf);
    if (config_read_file(&cf, path) != CONFIG_TRUE) {
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read the file: %s", path, strerror(errno));
        else
            snprintf(err, errlen, "%s:%d: %s",
                     config_error_file(&cf) ? config_error_file(&cf) : path,
                     config_error_line(&cf), config_error_text(&cf));
        config_destroy(&cf);
        return -1;
    }
    config_setting_t *root = config_root_setting(&cf);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *st = config_setting_get_elem(root, (unsigned)i);
        line = config_setting_source_line(st);
        snprintf(what, sizeof(what), "%s", config_setting_name(st));
        if (strcmp(config_setting_name(st), "services") != 0) {
            if (apply(st, OPT_GLOBAL, c, NULL, &why) == -1)
                goto out;
            continue;
        }
        if (!config_setting_is_list(st)) {
            why = "expected a list of services: services = ( { ... }, { ... } );";
            goto out;
        }
        for (int k = 0; k < config_setting_length(st); k++) {
            config_setting_t *g = config_setting_get_elem(st, (unsigned)k);
            line = config_setting_source_line(g);
            snprintf(what, sizeof(what), "services[%d]", k);
            if (!config_setting_is_group(g)) {
                why = "expected a service: { listen = \"...\"; upstream = \"...\"; }";
                goto out;
            }
            if (c->nservices == SHIM_MAX_SERVICES) {
                why = "too many services (64 at most)";
                goto out;
            }
            struct service_config *s = &c->services[c->nservices];
            service_config_defaults(s);
            lines[c->nservices++] = line;
            for (int m = 0; m < config_setting_length(g); m++) {
                config_setting_t *ms = config_setting_get_elem(g, (unsigned)m);
                line = config_setting_source_line(ms);
                snprintf(what, sizeof(what), "services[%d].%s", k, config_setting_name(ms));
                if (apply(ms, OPT_SERVICE, c, s, &why) == -1)
                    goto out;
            }
        }
    }
    int bad;
    if (shim_config_finish(c, &bad, &why) == -1) {
        line = bad >= 0 ? lines[bad] : 0;
        if (bad >= 0)
            snprintf(what, sizeof(what), "services[%d]", bad);
        else
            snprintf(what, sizeof(what), "services");
        goto out;
    }
    rc = 0;
out:
    if (rc == -1)
        snprintf(err, errlen, "%s:%d: %s: %s", path, line, what, why);
    config_destroy(&cf);
    return rc;
}
