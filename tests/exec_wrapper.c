/* Linked into the test programs of cross builds only (tests/meson.build).
 *
 * There the tests run under an emulator: the cross file's exe_wrapper (such
 * as qemu-aarch64), which `meson test` also exports to each test as
 * MESON_EXE_WRAPPER. Criterion starts every test by re-executing its own
 * program with execve(); without a binfmt_misc registration the host kernel
 * cannot run that foreign binary, so no test could start. This execve,
 * defined in the program, takes precedence over the C library's for the calls
 * libcriterion makes: a program built for the same machine as this one is run
 * through the wrapper, anything else (a host shell) directly. The process
 * keeps its pid across the exec, which is what Criterion relies on. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_WORDS 32
#define MAX_ARGS 256

/* The ELF e_machine field of a file, or -1 when it is not an ELF file. */
static int elf_machine(const char *path)
{
    unsigned char h[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    if (n != (ssize_t)sizeof h || memcmp(h, "\177ELF", 4) != 0)
        return -1;
    /* e_machine is at offset 18, in the file's byte order (EI_DATA) */
    return h[5] == 2 ? (h[18] << 8 | h[19]) : (h[19] << 8 | h[18]);
}

static int real_execve(const char *path, char *const argv[],
                       char *const envp[])
{
    return (int)syscall(SYS_execve, path, argv, envp);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    const char *w = getenv("MESON_EXE_WRAPPER");
    if (!w || !*w)
        return real_execve(path, argv, envp);
    int mine = elf_machine("/proc/self/exe");
    if (mine < 0 || elf_machine(path) != mine)
        return real_execve(path, argv, envp);

    /* wrapper words, then the program, then its arguments after argv[0] */
    static char words[4096];
    static char *wargv[MAX_WORDS + MAX_ARGS + 2];
    size_t wl = strlen(w);
    int argc = 0;
    while (argv[argc])
        argc++;
    if (wl >= sizeof words || argc > MAX_ARGS) {
        errno = E2BIG;
        return -1;
    }
    memcpy(words, w, wl + 1);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(words, " ", &save); t;
         t = strtok_r(NULL, " ", &save)) {
        if (n == MAX_WORDS) {
            errno = E2BIG;
            return -1;
        }
        wargv[n++] = t;
    }
    if (n == 0)
        return real_execve(path, argv, envp);
    wargv[n++] = (char *)path;
    for (int i = 1; i < argc; i++)
        wargv[n++] = argv[i];
    wargv[n] = NULL;
    return execvpe(wargv[0], wargv, envp);
}
