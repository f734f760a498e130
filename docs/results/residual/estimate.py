"""Desk estimate that chose the residual layer (session 18): dq-2's lossy image at a base quality, plus
the difference as 8x8 DCTs (orthonormal colour channels, dead-zone rounding), its bits estimated per
(channel, band group, context) two ways: 'kt', an adaptive Krichevsky-Trofimov code over the symbols,
and 'par', a zero/geometric/sign model with 32 bits of parameters per table (what dqcodec.residual
ships). Base quality 0 means no base (a flat grey image): the same DCT coder alone.

    python docs/results/residual/estimate.py 'FILES_GLOB_OR_COMMA_LIST' BASE_QUALITY STEPS DEAD_ZONE [DEAD_ZONE_AT_BAND_63]

It ran with the dq-2 weights ebf1b315, whose qualities 1-6 were [4,1],[4,2],[4,4],[4,6],[4,8],[4,12]; the
weights shipped since (49448f56) have the same tensors and qualities 1-4, and their qualities 5 and up are
residual ones, so base 6 now needs the old version (DQCODEC_MODELS pointing at a folder where it is current).
Prints mean bpp (base file bytes + estimated bits) and mean PSNR-RGB over the files."""
import io, sys, glob, numpy as np
from PIL import Image
from scipy.special import gammaln
import dqcodec
files = sys.argv[1].split(',') if ',' in sys.argv[1] else sorted(glob.glob(sys.argv[1]))
base_q = int(sys.argv[2]); deltas=[float(d) for d in sys.argv[3].split(',')]; theta=float(sys.argv[4]); theta_end=float(sys.argv[5]) if len(sys.argv)>5 else theta
N=8
k=np.arange(N); C=np.sqrt(2/N)*np.cos(np.pi*(2*k[None,:]+1)*k[:,None]/(2*N)); C[0]/=np.sqrt(2)
zig=sorted(range(64),key=lambda i:(i//8+i%8, (i//8) if (i//8+i%8)%2 else -(i//8)))
T = np.array([[1,1,1],[1,0,-1],[1,-2,1]],float); T/=np.linalg.norm(T,axis=1,keepdims=True)
def blocks(a): H,W=a.shape; return a.reshape(H//N,N,W//N,N).transpose(0,2,1,3)
def unblocks(b): h,w=b.shape[:2]; return b.transpose(0,2,1,3).reshape(h*N,w*N)
def kt_bits(sym):
    if sym.size==0: return 0.0
    lo,hi=sym.min(),sym.max(); A=hi-lo+1; n=np.bincount(sym-lo); a=0.5
    return (gammaln(sym.size+a*A)-gammaln(a*A)-np.sum(gammaln(n+a)-gammaln(a)))/np.log(2)
def par_bits(sym):
    # zero / geometric magnitude / sign, params quantized (8+12 bits), + max 12 bits
    if sym.size==0: return 0.0
    m=np.abs(sym); n=m.size; z=(m==0).sum(); nz=n-z
    p0=np.clip(round(z/n*256),1,255)/256
    b=-z*np.log2(p0)-nz*np.log2(1-p0)+nz  # sign
    if nz:
        mean=m[m>0].mean(); rho=np.clip(1-1/mean,1/4096,4095/4096); rho=round(rho*4096)/4096
        b+=-np.sum((m[m>0]-1)*np.log2(rho)+np.log2(1-rho))
    return b+32
def psnr(x,y): return 10*np.log10(255**2/np.mean((x.astype(float)-y)**2))
def nb(a):  # sum over 4-neighbours of a (h,w,...) block grid
    s=np.zeros_like(a); s[1:]+=a[:-1]; s[:-1]+=a[1:]; s[:,1:]+=a[:,:-1]; s[:,:-1]+=a[:,1:]; return s
res={d:[] for d in deltas}; basept=[]
for f in files:
    im=Image.open(f).convert('RGB'); x=np.asarray(im); H,W=x.shape[:2]
    if base_q:
        data=dqcodec.compress(im,quality=base_q,model='dq-2'); rec=np.asarray(dqcodec.decompress(data)).astype(float)
    else:
        data=b''; rec=np.full(x.shape,128.0)
    bbits=len(data)*8; basept.append((bbits/(H*W),psnr(x,rec)))
    Hc,Wc=H//8*8,W//8*8
    r=(x.astype(float)-rec)[:Hc,:Wc]@T.T
    for d in deltas:
        bits={'kt':bbits,'par':bbits}; out=np.zeros_like(r); Q=[]; acc={}
        for ch in range(3):
            cb=C@blocks(r[...,ch])@C.T
            ramp=np.zeros(64); ramp[zig]=theta+(theta_end-theta)*np.arange(64)/63  # the dead zone by zigzag position
            qv=(np.sign(cb)*np.floor(np.abs(cb)/d+0.5-ramp.reshape(8,8))).astype(int)
            flat=np.abs(qv.reshape(*qv.shape[:2],64)); Q.append(flat)
            for zi,band in enumerate(zig):
                prev=zig[max(0,zi-3):zi]
                u=(2*flat[...,prev].sum(-1)+nb(flat[...,prev]).sum(-1)) if prev else np.zeros(flat.shape[:2])
                if ch: u=u+4*Q[0][...,band]
                g=int(np.searchsorted([1,3,6,10,15,21,28,36,45],zi,side='right'))
                ctx=np.minimum(np.floor(np.log2(1+u)).astype(int),7)
                sym=qv.reshape(*qv.shape[:2],64)[...,band]
                for c in range(8):
                    acc.setdefault((ch,g,c),[]).append(sym[ctx==c])
            out[...,ch]=unblocks(C.T@(qv*d)@C)
        for v in acc.values():
            s=np.concatenate(v); bits['kt']+=kt_bits(s); bits['par']+=par_bits(s)
        y=rec.copy(); y[:Hc,:Wc]+=out@T
        y=np.clip(np.round(y),0,255)
        res[d].append((bits['kt']/(H*W),bits['par']/(H*W),psnr(x,y)))
    print(f.split('/')[-1],flush=True,file=sys.stderr)
print('base q%d'%base_q, '%.4f %.2f'%tuple(np.mean(basept,0)))
for d in deltas:
    print('delta %4.1f  kt %.4f par %.4f bpp %.2f dB'%(d,*np.mean(res[d],0)))
