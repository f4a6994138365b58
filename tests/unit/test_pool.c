/* Unit tests of proxy/pool.c: choosing a server, health and back-off, the
 * queue.  A real libev loop supplies the clock; time passing is simulated by
 * moving a member's deadlines into the past. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/net.h"
#include "proxy/pool.h"

struct fixture {
    struct ev_loop  *loop;
    struct pool_list list;
    struct pool      pool;
};

static int setup3(void **state)
{
    static struct fixture f;
    const char *why;
    memset(&f, 0, sizeof(f));
    f.loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f.loop);
    assert_int_equal(pool_list_add(&f.list, "127.0.0.1:5201", &why), 0);
    assert_int_equal(pool_list_add(&f.list, "127.0.0.1:5202", &why), 0);
    assert_int_equal(pool_list_add(&f.list, "[::1]:5203", &why), 0);
    pool_init(&f.pool, f.loop, "iperf3", "test", &f.list);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pool_stop(&f->pool);
    ev_loop_destroy(f->loop);
    return 0;
}

static void pick_iperf3__free_members__taken_in_turn(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++) {
            int k = pool_pick_iperf3(p, 0);
            assert_int_equal(k, i);
            pool_release_iperf3(p, &p->m[k].addr);
            p->m[k].released_at = 0;
        }
    }
}

static void pick_iperf3__member_running_a_test__skipped_until_released(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    assert_int_equal(pool_pick_iperf3(p, 0), 0);
    assert_int_equal(pool_pick_iperf3(p, 0), 1);
    assert_int_equal(pool_pick_iperf3(p, 0), 2);
    assert_int_equal(pool_pick_iperf3(p, 0), -1);   /* all busy with our tests */
    assert_true(pool_any_busy(p));
    pool_release_iperf3(p, &p->m[1].addr);
    assert_int_equal(pool_pick_iperf3(p, 0), 1);
}

static void pick_iperf3__skip_set__honoured(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    assert_int_equal(pool_pick_iperf3(p, (1u << 0) | (1u << 1)), 2);
    assert_int_equal(pool_pick_iperf3(p, (1u << 0) | (1u << 1)), -1);
}

static void refused__member_not_asked_for_a_second(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    int k = pool_pick_iperf3(p, 0);
    pool_member_refused(p, k);
    pool_release_iperf3(p, &p->m[k].addr);
    assert_true(pool_any_busy(p));   /* worth waiting for */
    for (int i = 0; i < 4; i++) {
        int j = pool_pick_iperf3(p, 0);
        assert_int_not_equal(j, k);
        if (j >= 0)
            pool_release_iperf3(p, &p->m[j].addr);
    }
    p->m[k].busy_until = ev_now(p->loop) - 0.01;   /* a second later */
    assert_int_equal(p->m[k].refusals, 1);
    bool seen = false;
    for (int i = 0; i < 3 && !seen; i++) {
        int j = pool_pick_iperf3(p, 0);
        seen = j == k;
        pool_release_iperf3(p, &p->m[j].addr);
    }
    assert_true(seen);
}

static void failed__down_with_doubling_backoff__up_after_success(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    pool_member_failed(p, 1, false, "Connection refused");
    assert_int_equal(p->m[1].health, MEMBER_DOWN);
    assert_true(p->m[1].retry_at > ev_now(p->loop));
    pool_member_failed(p, 1, false, "Connection refused");
    double b = p->m[1].backoff;
    assert_true(b == 8.0);   /* 2, then 4, next 8 */
    for (int i = 0; i < 6; i++) {
        int j = pool_pick_iperf3(p, 0);
        assert_int_not_equal(j, 1);
        pool_release_iperf3(p, &p->m[j].addr);
    }
    p->m[1].retry_at = ev_now(p->loop) - 0.01;   /* back-off over: tried again */
    bool seen = false;
    for (int i = 0; i < 3 && !seen; i++) {
        int j = pool_pick_iperf3(p, 0);
        seen = j == 1;
        pool_release_iperf3(p, &p->m[j].addr);
    }
    assert_true(seen);
    pool_member_ok(p, 1);
    assert_int_equal(p->m[1].health, MEMBER_UP);
    assert_true(p->m[1].backoff == 2.0);
}

static void suspect__skipped_like_down(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    pool_member_failed(p, 0, true, "no answer");
    assert_int_equal(p->m[0].health, MEMBER_SUSPECT);
    int up, down, busy;
    pool_counts(p, &up, &down, &busy);
    assert_int_equal(up, 2);
    assert_int_equal(down, 1);
    assert_int_equal(busy, 0);
}

static void all_down__the_one_due_first_is_tried(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    for (int i = 0; i < 3; i++)
        pool_member_failed(p, i, false, "Connection refused");
    p->m[2].retry_at -= 1.0;
    assert_true(pool_all_down(p));
    assert_false(pool_any_busy(p));
    assert_int_equal(pool_pick_iperf3(p, 0), 2);
    assert_int_equal(pool_pick_iperf3(p, 1u << 2), 0);   /* 0 and 1 tie: the first */
    assert_int_equal(pool_pick_iperf2(p), 2);
}

static void settling__refused_connect_right_after_a_test_is_not_down(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    assert_false(pool_member_settling(p, 0));
    int k = pool_pick_iperf3(p, 0);
    pool_release_iperf3(p, &p->m[k].addr);
    assert_true(pool_member_settling(p, k));
}

static void pick_any__busy_members_too__fewest_tests(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    assert_int_equal(pool_pick_iperf3(p, 0), 0);
    assert_int_equal(pool_pick_iperf3(p, 0), 1);
    assert_int_equal(pool_pick_any(p, 0), 2);
    assert_int_equal(pool_pick_any(p, 1u << 0), 1);
    assert_int_equal(p->m[1].tests, 2);
}

static void pick_iperf2__least_loaded(void **state)
{
    struct pool *p = &((struct fixture *)*state)->pool;
    assert_int_equal(pool_pick_iperf2(p), 0);
    assert_int_equal(pool_pick_iperf2(p), 1);
    assert_int_equal(pool_pick_iperf2(p), 2);
    pool_release_iperf2(p, &p->m[1].addr);
    assert_int_equal(pool_pick_iperf2(p), 1);
    pool_member_failed(p, 0, false, "Connection refused");
    pool_release_iperf2(p, &p->m[0].addr);   /* 0 has the least load, but is down */
    assert_int_not_equal(pool_pick_iperf2(p), 0);
}

static int wakes;
static struct pool *wake_pool;
static void wake_fn(struct pool_waiter *w)
{
    (void)w;
    wakes++;
    assert_true(pool_pick_iperf3(wake_pool, 0) >= 0);   /* a woken test claims a member */
}

static void queue__oldest_first__woken_after_a_release(void **state)
{
    struct fixture *f = *state;
    struct pool *p = &f->pool;
    struct pool_waiter a = { .since = 5.0, .wake = wake_fn }, b = { .since = 3.0, .wake = wake_fn },
                       c = { .since = 4.0, .wake = wake_fn };
    for (int i = 0; i < 3; i++)
        pool_pick_iperf3(p, 0);
    pool_enqueue(p, &a);
    pool_enqueue(p, &b);
    pool_enqueue(p, &c);
    assert_int_equal(p->queued, 3);
    assert_ptr_equal(p->head, &b);
    assert_ptr_equal(p->head->next, &c);
    assert_ptr_equal(p->tail, &a);
    pool_dequeue(p, &c);
    assert_false(c.queued);
    assert_ptr_equal(p->head->next, &a);
    pool_dequeue(p, &c);   /* not queued: no-op */
    assert_int_equal(p->queued, 2);

    wakes = 0;
    wake_pool = p;
    pool_release_iperf3(p, &p->m[1].addr);
    ev_run(f->loop, EVRUN_ONCE);   /* the deferred wake-up (0.1 s) */
    assert_int_equal(wakes, 1);    /* one member free: one waiter, the oldest */
    assert_false(b.queued);
    assert_true(a.queued);
    assert_int_equal(p->queued, 1);
    pool_dequeue(p, &a);
}

static void configure__kept_members_keep_state(void **state)
{
    struct fixture *f = *state;
    struct pool *p = &f->pool;
    const char *why;
    pool_member_failed(p, 1, false, "Connection refused");
    struct pool_list l = { 0 };
    assert_int_equal(pool_list_add(&l, "127.0.0.1:5202", &why), 0);
    assert_int_equal(pool_list_add(&l, "127.0.0.1:5299", &why), 0);
    pool_configure(p, &l);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->m[0].health, MEMBER_DOWN);
    assert_int_equal(p->m[1].health, MEMBER_UP);
    assert_int_equal(pool_find(p, &f->list.addr[0]), -1);
}

static void list__bounded_and_printed(void **state)
{
    (void)state;
    static struct pool_list l;
    const char *why = NULL;
    char buf[POOL_LIST_STR_MAX];
    memset(&l, 0, sizeof(l));
    assert_int_equal(pool_list_add(&l, "127.0.0.1:1", &why), 0);
    assert_string_equal(pool_list_str(&l, buf, sizeof(buf)), "127.0.0.1:1");
    assert_int_equal(pool_list_add(&l, "[::1]:2", &why), 0);
    assert_string_equal(pool_list_str(&l, buf, sizeof(buf)), "(127.0.0.1:1, [::1]:2)");
    assert_int_equal(pool_list_add(&l, "no-port", &why), -1);
    for (int i = 2; i < POOL_MAX; i++)
        assert_int_equal(pool_list_add(&l, "127.0.0.1:3", &why), 0);
    assert_int_equal(pool_list_add(&l, "127.0.0.1:4", &why), -1);
    assert_non_null(strstr(why, "64"));
    char small[100];
    assert_non_null(strstr(pool_list_str(&l, small, sizeof(small)), ", ...)"));
}

static void addr_same__host_or_host_and_port(void **state)
{
    struct fixture *f = *state;
    assert_true(net_same_host(&f->list.addr[0], &f->list.addr[1]));
    assert_false(net_same_addr(&f->list.addr[0], &f->list.addr[1]));
    assert_false(net_same_host(&f->list.addr[0], &f->list.addr[2]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pick_iperf3__free_members__taken_in_turn, setup3, teardown),
        cmocka_unit_test_setup_teardown(pick_iperf3__member_running_a_test__skipped_until_released,
                                        setup3, teardown),
        cmocka_unit_test_setup_teardown(pick_iperf3__skip_set__honoured, setup3, teardown),
        cmocka_unit_test_setup_teardown(refused__member_not_asked_for_a_second, setup3, teardown),
        cmocka_unit_test_setup_teardown(failed__down_with_doubling_backoff__up_after_success,
                                        setup3, teardown),
        cmocka_unit_test_setup_teardown(suspect__skipped_like_down, setup3, teardown),
        cmocka_unit_test_setup_teardown(all_down__the_one_due_first_is_tried, setup3, teardown),
        cmocka_unit_test_setup_teardown(settling__refused_connect_right_after_a_test_is_not_down,
                                        setup3, teardown),
        cmocka_unit_test_setup_teardown(pick_any__busy_members_too__fewest_tests, setup3, teardown),
        cmocka_unit_test_setup_teardown(pick_iperf2__least_loaded, setup3, teardown),
        cmocka_unit_test_setup_teardown(queue__oldest_first__woken_after_a_release, setup3, teardown),
        cmocka_unit_test_setup_teardown(configure__kept_members_keep_state, setup3, teardown),
        cmocka_unit_test(list__bounded_and_printed),
        cmocka_unit_test_setup_teardown(addr_same__host_or_host_and_port, setup3, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
