// A JVM victim for stasis (tests/jvm.rs): builds a heap of about argv[0] MiB of linked
// objects holding strings and small ints (an index map beside them, as a typical heap
// holds), starts worker threads, then every 100 ms re-checks every object, counts, and
// writes "count ok pid workers" to argv[1] (atomically, through a rename). "ok" is false
// when any object differs from what was put there; "workers" is how many of the worker
// threads are alive and still counting.
//
// With -Dheap.bench=true it is scripts/bench's jvm workload instead (the contract
// of scripts/bench/workload.c): it prints "READY <pid>", then on SIGUSR1 re-checks every
// object and writes "OK <verify-ns>" or "BAD" to argv[1].
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLongArray;

public class Heap {
    static final int VALS = 200;

    static final class Node {
        final int id;
        final String name;
        final int[] vals;
        final Node prev;

        Node(int id, Node prev) {
            this.id = id;
            this.prev = prev;
            this.name = name(id);
            this.vals = new int[VALS];
            for (int j = 0; j < VALS; j++) vals[j] = value(id, j);
        }

        boolean ok() {
            if (!name.equals(name(id))) return false;
            for (int j = 0; j < VALS; j++) if (vals[j] != value(id, j)) return false;
            return prev == null ? id == 0 : prev.id == id - 1;
        }
    }

    static String name(int id) {
        return "node-" + id + "/" + (id % 97);
    }

    static int value(int id, int j) {
        return (id * 31 + j) % 1000;
    }

    /** Every object is what it was made, and the index maps each name to its node. */
    static boolean check(HashMap<String, Node> index, Node last, int nodes) {
        boolean ok = index.size() == nodes;
        for (Node n = last; n != null && ok; n = n.prev) ok = n.ok() && index.get(n.name) == n;
        return ok;
    }

    /** The bench contract: READY, then one check on SIGUSR1 into the ok file. */
    static void bench(HashMap<String, Node> index, Node last, int nodes, Path ok, Path tmp)
            throws Exception {
        CountDownLatch usr1 = new CountDownLatch(1);
        sun.misc.Signal.handle(new sun.misc.Signal("USR1"), s -> usr1.countDown());
        System.out.println("READY " + ProcessHandle.current().pid());
        System.out.flush();
        usr1.await();
        long t0 = System.nanoTime();
        boolean good = check(index, last, nodes);
        long t1 = System.nanoTime();
        Files.writeString(tmp, good ? "OK " + (t1 - t0) + "\n" : "BAD\n");
        Files.move(tmp, ok, StandardCopyOption.ATOMIC_MOVE);
        Thread.sleep(Long.MAX_VALUE);
    }

    public static void main(String[] args) throws Exception {
        int mib = Integer.parseInt(args[0]);
        Path state = Paths.get(args[1]);
        Path tmp = Paths.get(args[1] + ".tmp");
        int nodes = (int) ((long) mib * 1024 * 1024 / (VALS * 4 + 96));
        HashMap<String, Node> index = new HashMap<>();
        Node last = null;
        for (int i = 0; i < nodes; i++) {
            last = new Node(i, last);
            index.put(last.name, last);
        }
        if (Boolean.getBoolean("heap.bench")) {
            bench(index, last, nodes, state, tmp);
            return;
        }
        AtomicLongArray ticks = new AtomicLongArray(3);
        for (int t = 0; t < ticks.length(); t++) {
            final int id = t;
            Thread w = new Thread(() -> {
                while (true) {
                    ticks.incrementAndGet(id);
                    try {
                        Thread.sleep(2);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "worker-" + t);
            w.setDaemon(true);
            w.start();
        }
        long[] seen = new long[ticks.length()];
        long pid = ProcessHandle.current().pid();
        for (long count = 1; ; count++) {
            boolean ok = check(index, last, nodes);
            int alive = 0;
            for (int t = 0; t < seen.length; t++) {
                long now = ticks.get(t);
                if (now > seen[t]) alive++;
                seen[t] = now;
            }
            Files.writeString(tmp, count + " " + ok + " " + pid + " " + alive + "\n");
            Files.move(tmp, state, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            Thread.sleep(100);
        }
    }
}
