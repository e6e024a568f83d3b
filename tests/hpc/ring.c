/* An MPI job for tests/hpc.rs: the ranks pass a counter around a ring, ROUNDS times.
 *
 *   mpirun -np N ring ROUNDS PROGRESS
 *
 * Rank 0 starts each round with the counter + 1; every rank checks that what it receives
 * is what the ring should hold at that point (a message lost, repeated or reordered across
 * a checkpoint shows as a wrong value: FAIL and MPI_Abort), adds 1 and passes it on. After
 * each round rank 0 writes the round number to PROGRESS (written whole and renamed), so
 * the test can see the job go on. At the end rank 0 prints "counter C PASS" with
 * C = ROUNDS * N. Rank 0 prints "ring start" once, at MPI_Init: a job that started over
 * prints it twice. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void progress(const char *path, long round)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%ld\n", round);
    fclose(f);
    rename(tmp, path);
}

static void check(long got, long want, int rank, long round)
{
    if (got == want)
        return;
    fprintf(stderr, "FAIL: rank %d, round %ld: counter %ld, expected %ld\n", rank, round,
            got, want);
    MPI_Abort(MPI_COMM_WORLD, 2);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 3) {
        if (rank == 0)
            fprintf(stderr, "usage: ring ROUNDS PROGRESS\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    long rounds = atol(argv[1]);
    if (rank == 0) {
        printf("ring start: %d ranks, %ld rounds\n", size, rounds);
        fflush(stdout);
    }
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    long counter = 0;
    for (long r = 0; r < rounds; r++) {
        if (rank == 0) {
            counter++;
            MPI_Send(&counter, 1, MPI_LONG, next, 0, MPI_COMM_WORLD);
            MPI_Recv(&counter, 1, MPI_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            check(counter, (r + 1) * size, rank, r);
            progress(argv[2], r + 1);
            usleep(10000);
        } else {
            MPI_Recv(&counter, 1, MPI_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            check(counter, r * size + rank, rank, r);
            counter++;
            MPI_Send(&counter, 1, MPI_LONG, next, 0, MPI_COMM_WORLD);
        }
    }
    MPI_Finalize();
    if (rank == 0) {
        printf("counter %ld PASS\n", counter);
        fflush(stdout);
    }
    return 0;
}
