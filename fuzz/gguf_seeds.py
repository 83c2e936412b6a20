#!/usr/bin/env python3
# gguf_seeds.py OUTDIR [SHARED] — regenerates the seed corpus fuzz/corpus/gguf/: small hand-built GGUFs
# (every value type, nested arrays, a SmarterQuant tensor, v2, alignment 64, metadata only) and
# the first 60000 bytes of two files from ../shared (a vocab file and the imatrix).
import struct, sys
out = sys.argv[1]
sh = (sys.argv[2] if len(sys.argv) > 2 else '../shared') + '/'
def s(b): 
    if isinstance(b,str): b=b.encode()
    return struct.pack('<Q',len(b))+b
def kv(k,t,v): return s(k)+struct.pack('<I',t)+v
def arr(et, items): return struct.pack('<IQ',et,len(items))+b''.join(items)
def pad(b,a=32): return b+b'\0'*((-len(b))%a)
def gguf(kvs, tensors, data, ver=3, al=32):
    h=b'GGUF'+struct.pack('<IQQ',ver,len(tensors),len(kvs))+b''.join(kvs)
    for name,ne,t,off in tensors:
        h+=s(name)+struct.pack('<I',len(ne))+b''.join(struct.pack('<Q',x) for x in ne)+struct.pack('<IQ',t,off)
    return pad(h,al)+data
kvs=[kv('general.architecture',8,s('test')), kv('general.alignment',4,struct.pack('<I',32)),
 kv('t.u8',0,b'\x07'),kv('t.i8',1,b'\xf9'),kv('t.u16',2,struct.pack('<H',65535)),kv('t.i16',3,struct.pack('<h',-2)),
 kv('t.u32',4,struct.pack('<I',7)),kv('t.i32',5,struct.pack('<i',-7)),kv('t.f32',6,struct.pack('<f',1.5)),
 kv('t.bool',7,b'\x01'),kv('t.u64',10,struct.pack('<Q',2**63+5)),kv('t.i64',11,struct.pack('<q',-5)),kv('t.f64',12,struct.pack('<d',2.25)),
 kv('t.arr_str',9,arr(8,[s('a'),s('bb'),s(''),s('ccc\n\xff')])), kv('t.arr_i16',9,arr(3,[struct.pack('<h',x) for x in (1,-2,3)])),
 kv('t.nested',9,arr(9,[arr(0,[b'\x01',b'\x02']),arr(8,[s('x')])])),
 kv('t.sq.smarterquant.enabled',7,b'\x01'),kv('t.sq.smarterquant.permutation',8,s('[]')),kv('t.sq.smarterquant.block_types',8,s('[8,2,2,2]'))]
data=pad(b'\x01'*32)+pad(b'\x02'*16)+pad(b'\x03'*(2*(272+144)))
ts=[('t.a',[8],0,0),('t.b',[4,2],1,32),('t.sq',[512,2],2,64)]
open(out+'/small-all-types.gguf','wb').write(gguf(kvs,ts,data))
open(out+'/small-v2.gguf','wb').write(gguf(kvs[:5],ts[:2],pad(b'\x01'*32)+pad(b'\x02'*16),ver=2))
open(out+'/kv-only.gguf','wb').write(gguf(kvs[:14],[],b''))
open(out+'/q8-align64.gguf','wb').write(gguf([kv('general.alignment',4,struct.pack('<I',64))],[('w',[64,2],8,0),('x',[256],12,192)],pad(b'\x05'*136,64)+pad(b'\x06'*144,64),al=64))
open(out+'/vocab-spm-truncated.gguf','wb').write(open(sh+'vocab/ggml-vocab-llama-spm.gguf','rb').read()[:60000])
im=bytearray(open(sh+'golden/llama.cpp/sqdemo.imatrix.gguf','rb').read())
open(out+'/imatrix-head.gguf','wb').write(bytes(im[:60000]))
