/*
 * maxrss PROG ARGS...: runs PROG and prints "EXIT_STATUS MAXRSS_KIB", the peak
 * resident set size the kernel recorded for it (wait4's ru_maxrss). The bench
 * uses it for kvmnet-ifup's peak RSS because std::process cannot return
 * rusage. vfork keeps this helper's own pages out of the child's count as far
 * as Linux allows: ru_maxrss also covers the image before exec, which here is
 * this tiny program, well below what is measured.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: maxrss PROG [ARGS...]\n", stderr);
		return 2;
	}
	pid_t pid = vfork();
	if (pid < 0) {
		perror("vfork");
		return 1;
	}
	if (pid == 0) {
		execv(argv[1], argv + 1);
		_exit(127);
	}
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("wait4");
		return 1;
	}
	printf("%d %ld\n", status, ru.ru_maxrss);
	return 0;
}
