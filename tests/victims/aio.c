/*
 * A native AIO context (io_setup) whose ring has wrapped and holds completions not yet
 * reaped (CRIU's aio01): one-byte writes to /dev/null complete at once; every second one
 * is reaped. After go the ring must be at the same address (the context id) with the
 * same size, head, tail and unreaped events, the next submission must complete into the
 * next slot, and io_getevents must return the events in order. With "forked", a child
 * forked meanwhile maps the ring without owning its context (tests/failure.rs expects
 * the dump refused).
 */
#include "victim.h"
#include "family.h"
#include <linux/aio_abi.h>
#include <sys/syscall.h>

struct ring {
	unsigned id, nr, head, tail, magic, compat, incompat, header;
	struct io_event events[];
};

static aio_context_t ctx;
static struct iocb cb, *cbp = &cb;

static void submit(unsigned long tag)
{
	cb.aio_data = tag;
	CHECK(syscall(SYS_io_submit, ctx, 1, &cbp) == 1, "io_submit: %s", strerror(errno));
}

static void idle(void)
{
	victim_wait_go();
}

int main(int argc, char **argv)
{
	struct family f = { .n = 0 };
	volatile struct ring *r;
	unsigned nr, head, tail, pending;
	struct io_event ev;
	char buf[1] = { 0 };
	unsigned long tag = 0, reaped = 0;

	victim_install_go();
	CHECK_SYS(syscall(SYS_io_setup, 64, &ctx));
	cb.aio_fildes = open("/dev/null", O_WRONLY);
	CHECK_SYS(cb.aio_fildes);
	cb.aio_buf = (unsigned long)buf;
	cb.aio_nbytes = 1;
	cb.aio_lio_opcode = IOCB_CMD_PWRITE;
	r = (struct ring *)ctx;
	nr = r->nr;
	for (unsigned i = 0; i < nr + 5; i++) {
		submit(tag++);
		if (i % 2) {
			CHECK(syscall(SYS_io_getevents, ctx, 1, 1, &ev, NULL) == 1, "io_getevents");
			CHECK(ev.data == reaped, "reaped event %llu, not %lu", (unsigned long long)ev.data, reaped);
			reaped++;
		}
	}
	head = r->head;
	tail = r->tail;
	pending = (tail + nr - head) % nr;
	CHECK(tail < head && pending > 1, "the ring did not wrap (head %u tail %u)", head, tail);
	if (argc > 1 && !strcmp(argv[1], "forked"))
		family_spawn(&f, idle);
	victim_ready();
	victim_wait_go();
	CHECK(r->nr == nr && r->head == head && r->tail == tail,
	      "ring nr/head/tail %u/%u/%u, was %u/%u/%u", r->nr, r->head, r->tail, nr, head, tail);
	submit(tag++);
	CHECK(r->tail == (tail + 1) % nr, "a submission completed into slot %u, not %u", r->tail, (tail + 1) % nr);
	for (unsigned i = 0; i <= pending; i++) {
		CHECK(syscall(SYS_io_getevents, ctx, 1, 1, &ev, NULL) == 1, "io_getevents after restore: %s", strerror(errno));
		CHECK(ev.data == reaped && ev.res == 1, "event %llu (res %lld), not %lu", (unsigned long long)ev.data, (long long)ev.res, reaped);
		reaped++;
	}
	CHECK(reaped == tag, "reaped %lu of %lu", reaped, tag);
	CHECK(syscall(SYS_io_destroy, ctx) == 0, "io_destroy: %s", strerror(errno));
	family_go(&f, "aio");
	victim_pass();
}
