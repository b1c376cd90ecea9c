/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it.
 *
 * Go 1.22 and later read random bytes through ProcessPrng, exported by
 * bcryptprimitives.dll since Windows 10, and a Go program exits at start-up
 * when the DLL or the function is missing. This DLL exports ProcessPrng and
 * forwards to RtlGenRandom (SystemFunction036 in advapi32.dll), which Wine
 * has. internal/wine builds it with the mingw-w64 cross compiler and puts it
 * in the prefix's system32 folder, the only place Go loads system DLLs from.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -s -o bcryptprimitives.dll \
 *            bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom; ntsecapi.h declares it only through a macro. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/*
 * ProcessPrng fills data with len random bytes. Windows documents that it
 * always returns TRUE; this one returns FALSE if RtlGenRandom fails, so
 * that a broken prefix makes the Go program fail instead of handing out
 * bytes that were never filled.
 */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		/* RtlGenRandom takes a 32-bit length. */
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;

		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
